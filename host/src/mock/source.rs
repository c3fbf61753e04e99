//! What the Armis and NetBox mocks share: an inventory that moves between
//! runs, injected faults, a cached device order for paging, and the knobs
//! that change them at runtime.

use std::sync::Arc;
use std::time::Duration;

use super::Faults;
use super::inventory::{Churn, Inventory, InventoryParams};

/// One mock source's inventory and faults. Opaque outside the mocks.
pub struct SourceState {
    pub(crate) inventory: Inventory,
    pub(crate) faults: Faults,
    /// Bumped on every inventory change, so a cached order is never stale.
    version: u64,
    /// The ids a list query selected, in serving order, keyed by the query
    /// and the inventory version: paging a large inventory re-selects once,
    /// not once per page.
    order_cache: Option<(String, u64, Arc<Vec<u64>>)>,
}

impl SourceState {
    /// A source serving `inventory`, without faults.
    pub(crate) fn new(inventory: Inventory) -> Self {
        Self {
            inventory,
            faults: Faults::default(),
            version: 0,
            order_cache: None,
        }
    }

    /// The ids `select` picks for the query `key`, computed once per
    /// inventory version.
    pub(crate) fn ordered<E>(
        &mut self,
        key: String,
        select: impl FnOnce(&Inventory) -> Result<Vec<u64>, E>,
    ) -> Result<Arc<Vec<u64>>, E> {
        if let Some((cached, version, ids)) = &self.order_cache
            && *cached == key
            && *version == self.version
        {
            return Ok(ids.clone());
        }
        let ids = Arc::new(select(&self.inventory)?);
        self.order_cache = Some((key, self.version, ids.clone()));
        Ok(ids)
    }

    fn advance_to(&mut self, run: u64) {
        self.inventory.advance_to(run);
        self.version += 1;
    }

    /// Regenerates the inventory with `params` at the same run.
    fn regenerate(&mut self, params: InventoryParams) {
        let run = self.inventory.run();
        self.inventory = Inventory::at_run(params, run);
        self.version += 1;
    }
}

/// The knobs every mock source has: which run its inventory is at, how
/// big it is, how it churns, and the faults its data requests get (token
/// and status endpoints are never faulted).
pub trait SourceKnobs {
    /// Runs `f` on the mock's source state under its lock.
    fn with_source<R>(&self, f: impl FnOnce(&mut SourceState) -> R) -> R;

    /// Moves the inventory to run `run` (churn applied).
    fn set_run(&self, run: u64) {
        self.with_source(|source| source.advance_to(run));
    }

    /// Regenerates the inventory with `devices` devices, at the same run.
    fn set_devices(&self, devices: u64) {
        self.with_source(|source| {
            let params = InventoryParams {
                devices,
                ..source.inventory.params()
            };
            source.regenerate(params);
        });
    }

    /// Sets the churn between runs (regenerates at the same run).
    fn set_churn(&self, churn: Churn) {
        self.with_source(|source| {
            let params = InventoryParams {
                churn,
                ..source.inventory.params()
            };
            source.regenerate(params);
        });
    }

    /// A copy of the current inventory.
    fn inventory(&self) -> Inventory {
        self.with_source(|source| source.inventory.clone())
    }

    /// The next `count` data requests fail with `status`.
    fn fail_next(&self, count: u32, status: u16) {
        self.with_source(|source| source.faults.fail_after(0, count, status));
    }

    /// After `ok` more data requests succeed, the next `count` fail with
    /// `status` (`u32::MAX`: for good).
    fn fail_after(&self, ok: u32, count: u32, status: u16) {
        self.with_source(|source| source.faults.fail_after(ok, count, status));
    }

    /// The next `count` data requests answer 429 with `Retry-After: secs`.
    fn rate_limit_next(&self, count: u32, retry_after_secs: u64) {
        self.with_source(|source| source.faults.rate_limit_next(count, retry_after_secs));
    }

    /// Every data request waits `delay` before answering.
    fn slow_pages(&self, delay: Duration) {
        self.with_source(|source| source.faults.slow_pages(delay));
    }

    /// Every (authorised) data request answers 302 to `base` + the same
    /// path and query — a redirect to a foreign host; `None` stops it.
    fn redirect_to(&self, base: Option<String>) {
        self.with_source(|source| source.faults.redirect_to(base));
    }

    /// Removes every injected fault, delay and redirect.
    fn clear_faults(&self) {
        self.with_source(|source| source.faults.clear());
    }
}
