//! Plan and apply: the configuration becomes a graph, the graph is walked in
//! parallel, and each resource instance is planned (and applied) through its
//! provider.
//!
//! A walk visits one node per variable, local, output, provider
//! configuration and resource block; a resource node expands its instances
//! (count / for_each) and runs them concurrently under a shared limit
//! (`-parallelism`). A node that fails stops the nodes that depend on it and
//! nothing else. Every instance that completes during apply is sent to the
//! state writer at once, so a crash loses at most the operation in flight.
//!
//! The engine is split by responsibility, from the walk down:
//! `walk` (a walk from start to end, and the nodes that are not resources),
//! `scheduler` (the one ready queue plan, apply and destroy share),
//! `resource` and `instance` (a resource node and each of its instances),
//! `destroy` (orphans, dropped instances, whole stacks), `context` (what a
//! walk's tasks share), `graph`, `scope` (what expressions see), `body` (a
//! block against its schema), `moves` and `stored` (instances as state
//! stores them).

mod body;
mod context;
mod destroy;
mod graph;
mod instance;
mod moves;
mod options;
mod resource;
mod scheduler;
mod scope;
mod stored;
mod walk;

pub use body::mark_schema_sensitive;
pub use graph::{Graph, Node, build_graph};
pub use options::{WalkMode, WalkOptions};
pub use stored::{PriorStateError, paths_from_state, paths_to_state, stored_instances};
pub use walk::{Walk, WalkInput};
