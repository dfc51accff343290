//! Connection limits shared by the SMTP and web listeners: a count per
//! client address, and the share of the process's file descriptors each
//! listener may hold. ~20,000 slow web connections once drove the process
//! to its descriptor limit, and the SMTP listener stopped greeting: each
//! listener now has a cap, and the caps leave room for everything else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections per client address, at most `max` each.
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIpLimit {
    pub fn new(max: usize) -> Arc<PerIpLimit> {
        Arc::new(PerIpLimit {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, or `None` when it has
    /// `max` already. The place is given back when dropped (however the
    /// connection ends, a panic included).
    pub fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limit: Arc::clone(self),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }
}

/// One connection's place in its address's count.
#[derive(Debug)]
pub struct IpSlot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.limit.release(self.ip);
    }
}

/// Descriptors kept for everything that is not a client connection: the
/// database pool (16 PostgreSQL connections, or SQLite's 8 with their WAL
/// and shared-memory files), the listeners, DNS sockets (32 lookups at
/// once), the IP databases, certificate reloads, the runtime's own.
pub const DESCRIPTOR_RESERVE: u64 = 128;

/// Fewest connections a listener is left with before starting is refused.
const FEWEST_CONNECTIONS: u64 = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the open-file limit is {limit}: too low to serve connections after the \
     {DESCRIPTOR_RESERVE} descriptors kept for the database, files and DNS; \
     raise it (ulimit -n, or LimitNOFILE= in the systemd unit)"
)]
pub struct TooFewDescriptors {
    pub limit: u64,
}

/// The connection caps of the web and SMTP listeners, fitted under the
/// open-file limit `limit` with `DESCRIPTOR_RESERVE` left over: unchanged
/// when they fit, else both lowered in proportion (a listener is never
/// cut to nothing while the other keeps all).
pub fn fit_to_descriptors(
    limit: u64,
    web: usize,
    smtp: usize,
) -> Result<(usize, usize), TooFewDescriptors> {
    let available = limit.saturating_sub(DESCRIPTOR_RESERVE);
    let wanted = web as u64 + smtp as u64;
    if wanted <= available {
        return Ok((web, smtp));
    }
    let listeners = u64::from(web > 0) + u64::from(smtp > 0);
    if available < FEWEST_CONNECTIONS * listeners {
        return Err(TooFewDescriptors { limit });
    }
    let scaled = |wanted_here: usize| -> usize {
        let share = (available * wanted_here as u64 / wanted).max(FEWEST_CONNECTIONS);
        share.min(wanted_here as u64) as usize
    };
    let (mut web_share, mut smtp_share) = (scaled(web), scaled(smtp));
    // The floors may have pushed the sum a little past what is available:
    // the larger share gives way.
    while (web_share + smtp_share) as u64 > available {
        if web_share >= smtp_share {
            web_share -= 1;
        } else {
            smtp_share -= 1;
        }
    }
    Ok((web_share, smtp_share))
}

/// Raises the process's open-file limit to its hard limit; returns the
/// limit before and the limit now in force.
pub fn raise_descriptor_limit() -> std::io::Result<(u64, u64)> {
    let (before, _) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok((before, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_has_at_most_its_share_and_gets_it_back() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = limit.claim(ip).unwrap();
        let _second = limit.claim(ip).unwrap();
        assert!(limit.claim(ip).is_none());
        assert!(limit.claim("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(limit.claim(ip).is_some());
    }

    #[test]
    fn caps_that_do_not_fit_the_descriptors_are_lowered_in_proportion() {
        assert_eq!(fit_to_descriptors(20_000, 1024, 512), Ok((1024, 512)));
        let (web, smtp) = fit_to_descriptors(256, 1024, 512).unwrap();
        assert!(web + smtp <= 128, "{web} + {smtp}");
        assert!(web > smtp && smtp >= 8, "{web}, {smtp}");
        assert_eq!(fit_to_descriptors(256, 0, 512), Ok((0, 128)));
        assert_eq!(
            fit_to_descriptors(130, 1024, 512),
            Err(TooFewDescriptors { limit: 130 })
        );
    }
}
