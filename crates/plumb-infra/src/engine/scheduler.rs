//! One ready-queue scheduler for every walk: plan, apply and destroy.
//!
//! A walk is a set of nodes, each with the nodes it waits for. The
//! scheduler starts every node whose dependencies have all succeeded as a
//! task of its own, and as each task ends releases the nodes that were
//! waiting only on it. A node that fails is reported, and everything that
//! depends on it, directly or not, is skipped without running; nodes on
//! independent branches go on. How wide a walk runs is bounded elsewhere
//! (the `-parallelism` semaphore around provider calls), not here: a node
//! that waits on nothing costs only a task.
//!
//! Plan and apply run it over the configuration's graph; destroy runs it
//! over the resources in state, each waiting for the resources that depend
//! on it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;

use crate::diag::Diag;
use crate::outcome::WalkError;

/// Runs `visit` for every node of `deps` (node → the nodes it waits for),
/// each once all its dependencies succeeded, and returns the errors of the
/// nodes that failed, in the order they failed.
pub async fn run<N, F, Fut>(deps: BTreeMap<N, BTreeSet<N>>, visit: F) -> Vec<WalkError>
where
    N: Clone + Ord + Hash + Display + Send + 'static,
    F: Fn(N) -> Fut,
    Fut: Future<Output = Result<(), Vec<Diag>>> + Send + 'static,
{
    let mut dependents: HashMap<N, Vec<N>> = HashMap::new();
    let mut waiting: HashMap<N, usize> = HashMap::new();
    for (n, ds) in &deps {
        waiting.insert(n.clone(), ds.len());
        for d in ds {
            dependents.entry(d.clone()).or_default().push(n.clone());
        }
    }
    let mut ready: Vec<N> = waiting
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(n, _)| n.clone())
        .collect();
    ready.sort();
    let mut running = tokio::task::JoinSet::new();
    let mut errors = Vec::new();
    let mut skipped: HashSet<N> = HashSet::new();
    loop {
        for n in ready.drain(..) {
            let task = visit(n.clone());
            running.spawn(async move { (n, task.await) });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (node, outcome) = match done {
            Ok(x) => x,
            Err(e) => {
                errors.push(WalkError {
                    what: "walk".into(),
                    diag: Diag::new(format!("internal task failed: {e}")),
                });
                continue;
            }
        };
        let ok = match outcome {
            Ok(()) => true,
            Err(diags) => {
                for d in diags {
                    errors.push(WalkError {
                        what: node.to_string(),
                        diag: d,
                    });
                }
                false
            }
        };
        // Release the dependents, or skip them and theirs.
        let mut stack = vec![(node, ok)];
        while let Some((n, ok)) = stack.pop() {
            if !ok {
                skipped.insert(n.clone());
            }
            for d in dependents.get(&n).cloned().unwrap_or_default() {
                if skipped.contains(&d) {
                    continue;
                }
                if !ok {
                    skipped.insert(d.clone());
                    stack.push((d, false));
                    continue;
                }
                if let Some(c) = waiting.get_mut(&d) {
                    *c -= 1;
                    if *c == 0 {
                        ready.push(d);
                    }
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn a_failure_skips_its_dependents_and_nothing_else() {
        // 1 <- 2 <- 3, and 4 <- 5 independent; 1 fails.
        let deps: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::from([
            (1, BTreeSet::new()),
            (2, BTreeSet::from([1])),
            (3, BTreeSet::from([2])),
            (4, BTreeSet::new()),
            (5, BTreeSet::from([4])),
        ]);
        let ran = Arc::new(Mutex::new(Vec::new()));
        let errors = run(deps, |n| {
            let ran = ran.clone();
            async move {
                ran.lock().unwrap().push(n);
                if n == 1 {
                    Err(vec![Diag::new("boom")])
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let mut ran = ran.lock().unwrap().clone();
        ran.sort();
        assert_eq!(ran, vec![1, 4, 5]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].what, "1");
        assert_eq!(errors[0].diag.message, "boom");
    }

    #[tokio::test]
    async fn a_node_runs_after_all_it_waits_for() {
        let deps: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::from([
            (1, BTreeSet::new()),
            (2, BTreeSet::new()),
            (3, BTreeSet::from([1, 2])),
        ]);
        let ran = Arc::new(Mutex::new(Vec::new()));
        let errors = run(deps, |n| {
            let ran = ran.clone();
            async move {
                ran.lock().unwrap().push(n);
                Ok(())
            }
        })
        .await;
        assert!(errors.is_empty());
        assert_eq!(ran.lock().unwrap().last(), Some(&3));
    }
}
