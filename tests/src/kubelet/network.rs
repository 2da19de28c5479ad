//! Pod addresses. Pods share the host's network namespace; each gets its own address on the loopback interface and
//! binds its servers to it (`status.podIP`).
//!
//! Two networks:
//! - [`PodNetwork::LocalRoute`] (the default when it can be set up): addresses from 198.18.0.0/15 (RFC 2544,
//!   reserved for benchmarking; never routed on the Internet), made local to this host by
//!   `ip route replace local 198.18.0.0/15 dev lo table local` (root / CAP_NET_ADMIN). Traffic never leaves the
//!   host, exactly like 127/8. These addresses are valid EndpointSlice / Endpoints addresses.
//! - [`PodNetwork::Loopback`]: 127.x.y.z, needs no privilege. The apiserver rejects loopback addresses in
//!   EndpointSlices and Endpoints ("may not be in the loopback range"), so Services get no endpoints there.
//!
//! `RINGCACHE_POD_NETWORK=loopback|local-route` forces one; otherwise local-route is used when it is (or can be
//! made) available, else loopback with a warning.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("setting up the local route for {cidr}: {detail}")]
    Route { cidr: String, detail: String },
    #[error("the pod network {cidr} is exhausted")]
    Exhausted { cidr: String },
    #[error("RINGCACHE_POD_NETWORK={0}: expected `loopback` or `local-route`")]
    BadEnv(String),
}

/// Which addresses pods get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNetwork {
    Loopback,
    LocalRoute,
}

pub const LOCAL_ROUTE_CIDR: &str = "198.18.0.0/15";

impl PodNetwork {
    /// Resolves the network to use (see the module docs), installing the local route when needed.
    pub fn detect() -> Result<PodNetwork, NetworkError> {
        match std::env::var("RINGCACHE_POD_NETWORK").ok().as_deref() {
            Some("loopback") => Ok(PodNetwork::Loopback),
            Some("local-route") => {
                ensure_local_route()?;
                Ok(PodNetwork::LocalRoute)
            }
            Some("") | None => match ensure_local_route() {
                Ok(()) => Ok(PodNetwork::LocalRoute),
                Err(e) => {
                    tracing::warn!(error = %e, "falling back to 127.x pod addresses: Services will have no EndpointSlices");
                    Ok(PodNetwork::Loopback)
                }
            },
            Some(other) => Err(NetworkError::BadEnv(other.to_owned())),
        }
    }

    /// Whether pod addresses are acceptable EndpointSlice addresses.
    pub fn endpoints_supported(self) -> bool {
        self == PodNetwork::LocalRoute
    }

    fn range(self) -> (u32, u32) {
        match self {
            // 127.1.0.0 .. 127.254.255.255
            PodNetwork::Loopback => (u32::from(Ipv4Addr::new(127, 1, 0, 0)), 254 << 16),
            // 198.18.0.0/15
            PodNetwork::LocalRoute => (u32::from(Ipv4Addr::new(198, 18, 0, 0)), 1 << 17),
        }
    }
}

fn bindable(ip: Ipv4Addr) -> bool {
    std::net::TcpListener::bind((ip, 0)).is_ok()
}

fn ensure_local_route() -> Result<(), NetworkError> {
    let probe = Ipv4Addr::new(198, 18, 0, 1);
    if bindable(probe) {
        return Ok(());
    }
    let out = Command::new("ip")
        .args([
            "route",
            "replace",
            "local",
            LOCAL_ROUTE_CIDR,
            "dev",
            "lo",
            "table",
            "local",
        ])
        .output()
        .map_err(|e| NetworkError::Route {
            cidr: LOCAL_ROUTE_CIDR.into(),
            detail: format!("running `ip`: {e}"),
        })?;
    if !out.status.success() {
        return Err(NetworkError::Route {
            cidr: LOCAL_ROUTE_CIDR.into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    if bindable(probe) {
        tracing::info!(cidr = LOCAL_ROUTE_CIDR, "installed local route for pod addresses");
        Ok(())
    } else {
        Err(NetworkError::Route {
            cidr: LOCAL_ROUTE_CIDR.into(),
            detail: "route installed but addresses are still not bindable".into(),
        })
    }
}

/// Hands out pod addresses. Each allocator starts at a pseudo-random offset so that concurrent kubelets (a test
/// run beside `make dev`) rarely collide, and skips addresses that are in use.
#[derive(Debug)]
pub struct IpAllocator {
    network: PodNetwork,
    base: u32,
    size: u32,
    next: Mutex<u32>,
    used: Mutex<HashSet<Ipv4Addr>>,
}

impl IpAllocator {
    pub fn new(network: PodNetwork) -> IpAllocator {
        let (base, size) = network.range();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id().wrapping_mul(2_654_435_761);
        // Start on a /24 boundary.
        let start = (seed % (size >> 8)) << 8;
        IpAllocator {
            network,
            base,
            size,
            next: Mutex::new(start),
            used: Mutex::new(HashSet::new()),
        }
    }

    pub fn network(&self) -> PodNetwork {
        self.network
    }

    /// A fresh address, not handed out before by this allocator (until it wraps) and not in use on this host.
    pub fn allocate(&self) -> Result<Ipv4Addr, NetworkError> {
        let mut next = self.next.lock().map_err(|_| NetworkError::Exhausted {
            cidr: format!("{:?}", self.network),
        })?;
        let mut used = self.used.lock().map_err(|_| NetworkError::Exhausted {
            cidr: format!("{:?}", self.network),
        })?;
        for _ in 0..self.size {
            let off = *next % self.size;
            *next = next.wrapping_add(1);
            let last = off & 0xff;
            // Skip .0, .1 and .255 of every /24.
            if last <= 1 || last == 255 {
                continue;
            }
            let ip = Ipv4Addr::from(self.base + off);
            if used.contains(&ip) || !bindable(ip) {
                continue;
            }
            used.insert(ip);
            return Ok(ip);
        }
        Err(NetworkError::Exhausted {
            cidr: format!("{:?}", self.network),
        })
    }

    pub fn release(&self, ip: Ipv4Addr) {
        if let Ok(mut used) = self.used.lock() {
            used.remove(&ip);
        }
    }
}
