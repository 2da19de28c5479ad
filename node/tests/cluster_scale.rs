//! The cluster data plane at the size the issue asks for: three in-process nodes with
//! R=2 serve 100k keys written through a cluster-aware client, and every key reads back
//! through the proxy port of every node; replication leaves two copies of each key.

mod common;

use std::time::{Duration, Instant};

use common::*;

const N: usize = 100_000;

#[test]
fn hundred_thousand_keys_through_a_cluster_client_and_every_proxy_port() {
    let (nodes, _) = three_nodes();

    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect();
    let client = redis::cluster::ClusterClient::new(urls).expect("cluster client");
    let mut con = client.get_connection().expect("connects");
    for chunk in (0..N).collect::<Vec<_>>().chunks(2000) {
        let mut pipe = redis::cluster::cluster_pipe();
        for &i in chunk {
            pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
        }
        let () = pipe.query(&mut con).expect("pipelined SETs through the cluster client");
    }

    for node in &nodes {
        let mut p = redis::Client::open(format!("redis://{}/", node.proxy_addr))
            .expect("url")
            .get_connection()
            .expect("proxy port");
        for chunk in (0..N).collect::<Vec<_>>().chunks(2000) {
            let mut pipe = redis::pipe();
            for &i in chunk {
                pipe.cmd("GET").arg(format!("key:{i}"));
            }
            let values: Vec<Option<i64>> = pipe.query(&mut p).expect("pipelined GETs through the proxy");
            for (&i, v) in chunk.iter().zip(values) {
                assert_eq!(
                    v,
                    Some(i as i64),
                    "key:{i} through the proxy of {}",
                    node.state.cluster.node_id
                );
            }
        }
    }

    // R=2: every key ends up on exactly two nodes once replication caught up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total: usize = nodes.iter().map(|n| n.store.dbsize()).sum();
        if total == 2 * N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replication did not converge: {total} copies of {N} keys"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in nodes {
        n.shutdown();
    }
}
