pub mod infra_tools;
pub mod postgres;
