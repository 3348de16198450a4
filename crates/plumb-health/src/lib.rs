//! Custom health checks written in Lua, as Argo CD runs them.
//!
//! Argo CD lets its users say how healthy a kind of object is with a Lua
//! script: the script sees the live object as the global `obj` and returns a
//! table `{status = "Degraded", message = "..."}`. plumb runs the same
//! scripts, found where an Argo CD user keeps them (the `argocd-cm`
//! ConfigMap, or a directory laid out as Argo CD's `resource_customizations`),
//! and a script for a kind overrides plumb's built-in rule for it.
//!
//! The crate has three parts: the sandbox ([`sandbox`]: a fresh Lua 5.2 state
//! per run with only safe libraries, and limits on instructions, memory and
//! time), the meaning of what a script returns ([`verdict`]: Argo CD's
//! rules), and the lookup ([`scripts`]: sources and keys; [`assess`]: the
//! order in which a deleting object, a script and the built-in rule are
//! asked).
//!
//! **Why Lua 5.2.** Argo CD runs scripts with gopher-lua, which implements
//! Lua 5.1 plus `goto` from 5.2 (Argo CD's own scripts use `goto continue`).
//! Vendored Lua 5.1 has no `goto`; LuaJIT has it but keeps its own allocator,
//! so no memory limit can be set on it; Lua 5.3 and later add an integer
//! subtype that changes how numbers print (`2.0` instead of `2`). Lua 5.2
//! has `goto`, only floating-point numbers as 5.1 and gopher-lua, and runs
//! on plumb's allocator, so the memory limit holds. The 5.1 functions Argo
//! CD's scripts still call (`table.getn`, global `unpack`) are provided.
//!
//! This crate reads files only when asked to load a directory or a
//! ConfigMap file; it talks to no cluster (plumb-pipeline reads `argocd-cm`
//! and hands its data here) and keeps plumb-model free of Lua.

pub mod assess;
mod oslib;
pub mod sandbox;
pub mod scripts;
pub mod verdict;

pub use assess::{Assessment, HealthScripts, Source};
pub use sandbox::{Limits, ScriptError};
pub use scripts::{Evaluation, LoadError, Script, ScriptSet, group_kind_key};
