//! The start order as a graph: a set of nodes that wait on each other can never start.

use super::tree::{NodeId, NodeKind, StartMode, Tree};

/// Finds a set of nodes that can never start because they wait on each other.
///
/// Vertices are "X is ready" (2X) and "X may start" (2X+1). Ready(X) needs start(X) and, for a
/// supervisor, ready(child) for every child; start(X) needs ready(a) for each `after` a,
/// ready(previous sibling) in a sequential supervisor, and start(parent). A cycle is a deadlock;
/// the nodes on it are returned in order.
pub fn find_start_cycle(tree: &Tree) -> Option<Vec<NodeId>> {
    let n = tree.nodes.len();
    let ready = |x: NodeId| 2 * x;
    let start = |x: NodeId| 2 * x + 1;
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); 2 * n];
    for x in 0..n {
        edges[ready(x)].push(start(x));
        for &c in tree.children(x) {
            edges[ready(x)].push(ready(c));
        }
        for &a in &tree.nodes[x].after {
            edges[start(x)].push(ready(a));
        }
        if let Some(p) = tree.nodes[x].parent {
            edges[start(x)].push(start(p));
            let sequential = matches!(
                &tree.nodes[p].kind,
                NodeKind::Supervisor(s) if s.start == StartMode::Sequential
            );
            let sib = tree.children(p);
            if let Some(pos) = sib.iter().position(|&c| c == x) {
                if pos > 0 && sequential {
                    edges[start(x)].push(ready(sib[pos - 1]));
                }
            }
        }
    }
    // Iterative DFS with colours.
    let mut colour = vec![0u8; 2 * n];
    let mut parent = vec![usize::MAX; 2 * n];
    for s in 0..2 * n {
        if colour[s] != 0 {
            continue;
        }
        let mut stack = vec![(s, 0usize)];
        colour[s] = 1;
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            if *i < edges[v].len() {
                let w = edges[v][*i];
                *i += 1;
                if colour[w] == 0 {
                    colour[w] = 1;
                    parent[w] = v;
                    stack.push((w, 0));
                } else if colour[w] == 1 {
                    // Cycle w -> ... -> v -> w.
                    let mut verts = vec![v];
                    let mut u = v;
                    while u != w {
                        u = parent[u];
                        verts.push(u);
                    }
                    verts.reverse();
                    let mut nodes: Vec<NodeId> = Vec::new();
                    for v in verts {
                        let x = v / 2;
                        if nodes.last() != Some(&x) && nodes.first() != Some(&x) {
                            nodes.push(x);
                        }
                    }
                    return Some(nodes);
                }
            } else {
                colour[v] = 2;
                stack.pop();
            }
        }
    }
    None
}
