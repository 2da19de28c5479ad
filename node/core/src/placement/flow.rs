//! A small min-cost max-flow (primal-dual with Dinic blocking flows), used by the
//! replica phase on class-level graphs of a few hundred nodes.

/// Handle of an edge in a [`Flow`] graph.
#[derive(Debug, Clone, Copy)]
pub(super) struct EdgeRef {
    node: usize,
    index: usize,
}

/// Min-cost max-flow on the small class-level graphs of [`Replicas::fill_holes`] (all
/// costs 0, i.e. plain Dinic) and [`Replicas::solve_exact`] (costs 0/1).
pub(super) struct Flow {
    /// Per node: (to, reverse edge index, residual capacity, cost).
    graph: Vec<Vec<(usize, usize, u64, i64)>>,
    original: Vec<Vec<u64>>,
}

impl Flow {
    pub(super) fn new(nodes: usize) -> Self {
        Self {
            graph: vec![Vec::new(); nodes],
            original: vec![Vec::new(); nodes],
        }
    }

    pub(super) fn add_node(&mut self) -> usize {
        self.graph.push(Vec::new());
        self.original.push(Vec::new());
        self.graph.len() - 1
    }

    pub(super) fn add_edge(&mut self, from: usize, to: usize, cap: u64, cost: i64) -> EdgeRef {
        let index = self.graph[from].len();
        let rev = self.graph[to].len();
        self.graph[from].push((to, rev, cap, cost));
        self.original[from].push(cap);
        self.graph[to].push((from, index, 0, -cost));
        self.original[to].push(0);
        EdgeRef { node: from, index }
    }

    pub(super) fn flow(&self, e: EdgeRef) -> u64 {
        self.original[e.node][e.index] - self.graph[e.node][e.index].2
    }

    /// Primal-dual: shortest distances by Bellman-Ford, then a blocking flow (Dinic)
    /// over the edges on shortest paths; repeat until the sink is unreachable. Costs
    /// are 0/1 here, so there are few rounds.
    pub(super) fn run(&mut self, source: usize, sink: usize) -> u64 {
        let n = self.graph.len();
        let mut total = 0;
        loop {
            let mut dist = vec![i64::MAX; n];
            let mut queued = vec![false; n];
            dist[source] = 0;
            let mut queue = std::collections::VecDeque::from([source]);
            while let Some(u) = queue.pop_front() {
                queued[u] = false;
                for &(v, _, cap, cost) in &self.graph[u] {
                    if cap > 0 && dist[u] + cost < dist[v] {
                        dist[v] = dist[u] + cost;
                        if !queued[v] {
                            queued[v] = true;
                            queue.push_back(v);
                        }
                    }
                }
            }
            if dist[sink] == i64::MAX {
                return total;
            }
            let admissible = |dist: &[i64], u: usize, e: &(usize, usize, u64, i64)| {
                e.2 > 0 && dist[u] != i64::MAX && dist[u] + e.3 == dist[e.0]
            };
            loop {
                let mut level = vec![usize::MAX; n];
                level[source] = 0;
                let mut queue = std::collections::VecDeque::from([source]);
                while let Some(u) = queue.pop_front() {
                    for e in &self.graph[u] {
                        if admissible(&dist, u, e) && level[e.0] == usize::MAX {
                            level[e.0] = level[u] + 1;
                            queue.push_back(e.0);
                        }
                    }
                }
                if level[sink] == usize::MAX {
                    break;
                }
                let mut iter = vec![0usize; n];
                loop {
                    let pushed = self.push(source, sink, u64::MAX, &dist, &level, &mut iter);
                    if pushed == 0 {
                        break;
                    }
                    total += pushed;
                }
            }
        }
    }

    fn push(&mut self, u: usize, sink: usize, limit: u64, dist: &[i64], level: &[usize], iter: &mut [usize]) -> u64 {
        if u == sink {
            return limit;
        }
        while iter[u] < self.graph[u].len() {
            let (v, rev, cap, cost) = self.graph[u][iter[u]];
            if cap > 0 && dist[u] + cost == dist[v] && level[v] == level[u] + 1 {
                let pushed = self.push(v, sink, limit.min(cap), dist, level, iter);
                if pushed > 0 {
                    self.graph[u][iter[u]].2 -= pushed;
                    self.graph[v][rev].2 += pushed;
                    return pushed;
                }
            }
            iter[u] += 1;
        }
        0
    }
}
