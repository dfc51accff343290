//! Per-client-IP rate limits (sign-in attempts, TLS-RPT POSTs): a fixed
//! one-minute window per IP, in memory. An IPv6 client counts as its /64:
//! one host usually holds a whole /64, and counting each address would
//! give it billions of windows. Old windows are dropped as the map grows,
//! so memory stays bounded whatever the clients do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 100_000;

pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn per_minute(per_window: u32) -> Self {
        RateLimiter {
            per_window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `ip`; false when it is over the limit.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let ip = client_key(ip);
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                windows.clear();
            }
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_window
    }

    /// Forgets `ip` (after a successful sign-in).
    pub fn reset(&self, ip: IpAddr) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&client_key(ip));
    }
}

/// What a window is kept for: the IPv4 address, or the IPv6 address's /64
/// (an IPv4-mapped IPv6 address counts as its IPv4 address).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_up_to_the_limit_per_ip() {
        let limiter = RateLimiter::per_minute(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.allow(a) && limiter.allow(a));
        assert!(!limiter.allow(a));
        assert!(limiter.allow(b));
        limiter.reset(a);
        assert!(limiter.allow(a));
    }

    #[test]
    fn an_ipv6_client_counts_as_its_64() {
        let limiter = RateLimiter::per_minute(2);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.allow(one) && limiter.allow(same_64));
        assert!(!limiter.allow("2001:db8:1:2:abcd::1".parse().unwrap()));
        assert!(limiter.allow(other_64));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(limiter.allow(mapped) && limiter.allow(v4));
        assert!(!limiter.allow(v4));
    }
}
