//! Bad input on every port loses nothing: random bytes and truncated frames sent to
//! the RESP, proxy, admin and control ports close (at most) those connections, and
//! the node keeps serving its data afterwards.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};

fn blast(addr: SocketAddr, rng: &mut rand::rngs::StdRng, rounds: usize) {
    for i in 0..rounds {
        let Ok(mut s) = TcpStream::connect(addr) else { continue };
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
        let len = rng.gen_range(0..512);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Every other round starts like a plausible frame, to get past the first byte.
        if i % 2 == 0 {
            let prefixes: [&[u8]; 6] = [
                b"*3\r\n$3\r\nSET\r\n",
                b"*1\r\n$",
                b"GET ",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\n",
                b"*2\r\n$9\r\nRINGCACHE.SYNC\r\n",
            ];
            let p = prefixes[rng.gen_range(0..prefixes.len())];
            junk.splice(0..0, p.iter().copied());
        }
        let _ = s.write_all(&junk);
        let _ = read_some(&mut s, 1);
    }
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn random_bytes_on_every_port_lose_nothing() {
    // A panic in any server task or thread is counted, not just a crashed test.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let nodes: Vec<_> = ["a", "b"].iter().map(|id| cluster_node(id)).collect();
    form(&nodes, 2);
    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect();
    let client = redis::cluster::ClusterClient::new(urls).expect("cluster client");
    let mut con = client.get_connection().expect("connects");
    for i in 0..500 {
        let () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .expect("set");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for n in &nodes {
        for addr in [n.resp_addr, n.proxy_addr, n.admin_addr, n.control_addr] {
            blast(addr, &mut rng, 150);
        }
    }
    for i in 0..500 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut con)
            .expect("get after the garbage");
        assert_eq!(v, i);
    }
    for n in &nodes {
        let mut c = redis::Client::open(format!("redis://{}/", n.proxy_addr))
            .expect("url")
            .get_connection()
            .expect("proxy still accepts");
        assert_eq!(cmd::<String>(&mut c, &["PING"]), "PONG");
        assert!(http_get(n.admin_addr, "/healthz").starts_with("HTTP/1.1 200"));
    }
    for n in nodes {
        n.shutdown();
    }
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a server thread or task panicked on bad input"
    );
}
