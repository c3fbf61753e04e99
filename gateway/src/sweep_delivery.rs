//! Sweep configs for monitoring agents: built from the tenant's active
//! devices assigned to the agent (pure generation in [`crate::sweep`]),
//! cached per (tenant, agent) and rebuilt only when the tenant's devices
//! (`tenants.data_generation`) or its integration sources
//! (`tenants.sources_generation`) changed — one cheap query per GetConfig
//! otherwise; another tenant's edits leave the cache alone. A rebuild
//! reloads only the devices changed since the last one (by their DIRE change
//! stamps, see the tenant migration `0003`), unless the sources changed. An
//! ingest commit that changed devices also starts a background refresh of
//! the tenant's cached sweeps, so agents' polls after a sync find them
//! already rebuilt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool, Row};
use sr_proto::encoded_response::EncodedBody;
use sr_proto::sync_config::SourceConfig;
use thiserror::Error;
use uuid::Uuid;

use crate::state::AppState;
use crate::sweep::{
    SweepDefaults, SweepDevice, SweepDocument, SweepMetadata, SweepSource, SweepStats,
    generate_with_config_json,
};

/// Building an agent's sweep failed.
#[derive(Debug, Error)]
pub enum SweepDeliveryError {
    /// The tenant does not exist.
    #[error("tenant {0} does not exist")]
    UnknownTenant(Uuid),
    /// A query failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The task generating the sweep did not finish (it panicked, or the
    /// gateway is shutting down).
    #[error("building the sweep config stopped: {0}")]
    Build(String),
    /// Encoding failed.
    #[error("encoding the sweep config: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One agent's sweep, ready to serve.
#[derive(Debug)]
pub struct AgentSweep {
    /// The config version (the document's content hash).
    pub version: String,
    /// When it was built.
    pub built_at: DateTime<Utc>,
    /// The response's `config_json` (`{"sweep": …}`) and typed
    /// `SweepConfig` (field 10), encoded once for every call that serves
    /// this version.
    pub body: EncodedBody,
    /// The document (for the admin preview).
    pub document: Arc<SweepDocument>,
    /// What generation skipped or fixed.
    pub stats: SweepStats,
    /// True when every assigned device was loaded for this build (the
    /// first one, or the sources changed); false when only the devices
    /// changed since the previous build were.
    pub full_reload: bool,
    data_generation: i64,
    sources_generation: i64,
}

impl AgentSweep {
    /// The same sweep (its body and document shared, not copied), fresh for
    /// `(data_generation, sources_generation)`.
    fn fresh_for(&self, (data_generation, sources_generation): (i64, i64)) -> Self {
        Self {
            version: self.version.clone(),
            built_at: self.built_at,
            body: self.body.clone(),
            document: self.document.clone(),
            stats: self.stats.clone(),
            full_reload: false,
            data_generation,
            sources_generation,
        }
    }
}

/// Built sweeps by (tenant, agent id), and the background refreshes after
/// ingest commits.
#[derive(Debug)]
pub struct SweepCache {
    slots: Mutex<HashMap<(Uuid, String), Arc<Slot>>>,
    /// Tenants with a background refresh running, and whether another
    /// commit arrived during its pass (so one more pass is due).
    refreshes: Mutex<HashMap<Uuid, bool>>,
    idle_limit: std::time::Duration,
    /// This gateway process among the replicas sharing the database.
    replica: Uuid,
}

impl Default for SweepCache {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
            refreshes: Mutex::default(),
            idle_limit: IDLE_AGENT,
            replica: Uuid::new_v4(),
        }
    }
}

/// One agent's cached sweep. The async lock is held while it is rebuilt, so
/// a call that finds it stale waits for a rebuild in flight (a background
/// refresh or another call) instead of building the same sweep twice.
#[derive(Debug)]
struct Slot {
    current: tokio::sync::Mutex<SlotState>,
    /// When the agent (or an operator's preview) last asked for it.
    asked: Mutex<std::time::Instant>,
    /// When the agent's poll was last recorded in `platform.components`.
    poll_recorded: Mutex<Option<std::time::Instant>>,
}

/// What a slot holds between rebuilds.
#[derive(Debug, Default)]
struct SlotState {
    sweep: Option<Arc<AgentSweep>>,
    /// The devices the sweep was built from, so the next rebuild reloads
    /// only what changed. `None` until the first build, and after a failed
    /// one (the next build then loads everything).
    devices: Option<AgentDevices>,
}

/// The devices assigned to one agent, as of a change stamp.
#[derive(Debug, Default)]
struct AgentDevices {
    devices: Vec<SweepDevice>,
    /// Position in `devices` by device id.
    index: HashMap<String, usize>,
    /// Every device change with a stamp up to this one is reflected here.
    stamp: i64,
    /// The tenant's sources generation they were loaded under: assignment
    /// through a source depends on its agent, so a source change reloads
    /// everything.
    sources_generation: i64,
    /// The sources' settings (and the unusable ones) of the last build.
    built_from: Option<(Vec<SweepSource>, Vec<String>)>,
}

impl AgentDevices {
    fn new(sources_generation: i64) -> Self {
        Self {
            sources_generation,
            ..Self::default()
        }
    }

    /// Adds or replaces a device.
    fn put(&mut self, device: SweepDevice) {
        match self.index.get(&device.device_id) {
            Some(&at) => self.devices[at] = device,
            None => {
                self.index
                    .insert(device.device_id.clone(), self.devices.len());
                self.devices.push(device);
            }
        }
    }

    /// Removes a device; false when it was not there.
    fn remove(&mut self, device_id: &str) -> bool {
        let Some(at) = self.index.remove(device_id) else {
            return false;
        };
        self.devices.swap_remove(at);
        if let Some(moved) = self.devices.get(at) {
            self.index.insert(moved.device_id.clone(), at);
        }
        true
    }
}

/// Sweeps nobody asked for in this long are dropped at their tenant's next
/// refresh pass instead of being rebuilt, so the cache holds the agents that
/// are polling, not every agent that ever did.
const IDLE_AGENT: std::time::Duration = std::time::Duration::from_secs(3600);

/// An agent's polls are recorded in `platform.components.last_seen_at` at
/// most this often, so that a restarted gateway knows whose sweeps to build
/// before they ask, without a write per poll.
const POLL_RECORD_SPACING: std::time::Duration = std::time::Duration::from_secs(300);

/// Background refreshes of one tenant use at most this share of a core:
/// after a pass that took `t`, the next waits `t × (1 / share − 1)`.
const REFRESH_DUTY_SHARE: u32 = 10;
/// Shortest wait between two refresh passes of a tenant.
const REFRESH_MIN_SPACING: std::time::Duration = std::time::Duration::from_millis(100);

impl SweepCache {
    fn slot(&self, tenant_id: Uuid, agent_id: &str) -> Arc<Slot> {
        lock(&self.slots)
            .entry((tenant_id, agent_id.to_string()))
            .or_insert_with(|| {
                Arc::new(Slot {
                    current: tokio::sync::Mutex::default(),
                    asked: Mutex::new(std::time::Instant::now()),
                    poll_recorded: Mutex::default(),
                })
            })
            .clone()
    }

    /// The agent's sweep as cached now, fresh or not, without waiting for
    /// a rebuild in flight.
    pub fn cached(&self, tenant_id: Uuid, agent_id: &str) -> Option<Arc<AgentSweep>> {
        let slot = lock(&self.slots)
            .get(&(tenant_id, agent_id.to_string()))?
            .clone();
        let current = slot.current.try_lock().ok()?;
        current.sweep.clone()
    }

    /// Drops every cached sweep, as a restart does: the next poll of each
    /// agent rebuilds its sweep from scratch.
    pub fn clear(&self) {
        lock(&self.slots).clear();
    }

    /// Whether any sweep of the tenant is cached here.
    fn holds_tenant(&self, tenant_id: Uuid) -> bool {
        lock(&self.slots)
            .keys()
            .any(|(tenant, _)| *tenant == tenant_id)
    }

    /// The tenants with cached sweeps.
    fn tenants(&self) -> std::collections::BTreeSet<Uuid> {
        lock(&self.slots)
            .keys()
            .map(|(tenant, _)| *tenant)
            .collect()
    }

    /// The tenant's agents, with their slots, that asked for a sweep within
    /// [`IDLE_AGENT`]; the others' sweeps are dropped.
    fn agents_to_refresh(&self, tenant_id: Uuid) -> Vec<(String, Arc<Slot>)> {
        let mut slots = lock(&self.slots);
        slots.retain(|(tenant, _), slot| {
            *tenant != tenant_id || lock(&slot.asked).elapsed() < self.idle_limit
        });
        slots
            .iter()
            .filter(|((tenant, _), _)| *tenant == tenant_id)
            .map(|((_, agent), slot)| (agent.clone(), slot.clone()))
            .collect()
    }
}

/// PostgreSQL channel on which ingest commits announce that a tenant's
/// devices changed, so every gateway replica refreshes the sweeps it caches,
/// not only the one that committed. Payload: `<tenant id> <replica id>`.
/// The trigger on `platform.integration_sources` announces source changes
/// with the nil replica id, which every replica acts on.
pub const REFRESH_CHANNEL: &str = "sr_sweep_refresh";

/// Records, inside an ingest transaction, that a tenant's devices changed,
/// and announces it to the other replicas (a notification is delivered at
/// commit, and never for a rolled-back transaction).
pub async fn mark_devices_changed(
    tx: &mut PgConnection,
    cache: &SweepCache,
    tenant_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH bumped AS (UPDATE platform.tenants SET data_generation = data_generation + 1 \
                          WHERE id = $1 RETURNING id) \
         SELECT pg_notify($2, $3) FROM bumped",
    )
    .bind(tenant_id)
    .bind(REFRESH_CHANNEL)
    .bind(format!("{tenant_id} {}", cache.replica))
    .execute(tx)
    .await
    .map(|_| ())
}

/// Follows the announcements on [`REFRESH_CHANNEL`] (other replicas'
/// ingest commits, and source changes from any replica) and refreshes the
/// sweeps this replica caches for their tenants, until `shutdown` changes. Losing the connection is logged and every cached tenant is
/// refreshed once it is back, since announcements in between are lost.
/// Without it, polls still rebuild stale sweeps: this only saves them the
/// wait.
pub async fn follow_refresh_announcements(
    state: Arc<AppState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let mut listener = loop {
        let connected = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&state.pool).await?;
            listener.listen(REFRESH_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            connected = connected => match connected {
                Ok(listener) => break listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other gateways' device changes; retrying in 5 s");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            },
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => {
                    match refresh_announcement(notification.payload(), state.sweep_cache.replica) {
                        Ok(Some(tenant_id)) if state.sweep_cache.holds_tenant(tenant_id) => {
                            refresh_after_commit(state.clone(), tenant_id);
                        }
                        Ok(_) => {}
                        Err(payload) => tracing::warn!(payload, "ignoring a malformed sweep refresh announcement"),
                    }
                }
                Ok(None) => {
                    tracing::warn!("lost the connection for other gateways' device changes; reconnecting, then refreshing every cached sweep");
                    // The next try_recv reconnects; announcements until then are lost.
                    for tenant_id in state.sweep_cache.tenants() {
                        refresh_after_commit(state.clone(), tenant_id);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "listening for other gateways' device changes failed; retrying in 5 s");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            },
        }
    }
}

/// The tenant of an announcement on [`REFRESH_CHANNEL`]; `None` for this
/// replica's own ingest commits (it refreshed right after committing); the
/// payload back when it is malformed.
fn refresh_announcement(payload: &str, own_replica: Uuid) -> Result<Option<Uuid>, &str> {
    let parsed = payload.split_once(' ').and_then(|(tenant, replica)| {
        Some((tenant.parse::<Uuid>().ok()?, replica.parse::<Uuid>().ok()?))
    });
    match parsed {
        Some((_, replica)) if replica == own_replica => Ok(None),
        Some((tenant, _)) => Ok(Some(tenant)),
        None => Err(payload),
    }
}

/// After an ingest commit that changed a tenant's devices: rebuilds, in the
/// background, the sweeps of the tenant's agents that have asked for one,
/// so their next poll is served from the cache instead of paying for the
/// rebuild. Commits arriving during a pass coalesce into one more pass, and
/// passes are spaced so that refreshing takes at most a tenth of a core.
pub fn refresh_after_commit(state: Arc<AppState>, tenant_id: Uuid) {
    {
        let mut refreshes = lock(&state.sweep_cache.refreshes);
        if let Some(again) = refreshes.get_mut(&tenant_id) {
            *again = true;
            return;
        }
        refreshes.insert(tenant_id, false);
    }
    tokio::spawn(async move {
        loop {
            let started = std::time::Instant::now();
            refresh_tenant(
                &state.pool,
                &state.sweep_cache,
                tenant_id,
                state.clock.now(),
            )
            .await;
            let took = started.elapsed();
            {
                let mut refreshes = lock(&state.sweep_cache.refreshes);
                match refreshes.get_mut(&tenant_id) {
                    Some(again) if *again => *again = false,
                    _ => {
                        refreshes.remove(&tenant_id);
                        return;
                    }
                }
            }
            tokio::time::sleep((took * (REFRESH_DUTY_SHARE - 1)).max(REFRESH_MIN_SPACING)).await;
        }
    });
}

/// Brings every cached sweep of the tenant up to date (one pass of
/// [`refresh_after_commit`]). Failures are logged: the agent's next poll
/// rebuilds and reports them.
async fn refresh_tenant(pool: &PgPool, cache: &SweepCache, tenant_id: Uuid, now: DateTime<Utc>) {
    // One read of the generations serves the whole pass.
    let tenant = match TenantRow::read(pool, tenant_id).await {
        Ok(tenant) => tenant,
        Err(error) => {
            tracing::warn!(tenant_id = %tenant_id, %error,
                "refreshing the tenant's sweep configs failed; agents' next polls rebuild them");
            return;
        }
    };
    for (agent_id, slot) in cache.agents_to_refresh(tenant_id) {
        if let Err(error) = current_sweep(pool, &slot, &tenant, &agent_id, now).await {
            tracing::warn!(tenant_id = %tenant_id, agent_id, %error,
                "refreshing the sweep config failed; the agent's next poll rebuilds it");
        }
    }
}

/// Records that an edge agent polled for its sweep (`last_seen_at`), at
/// most every five minutes (`POLL_RECORD_SPACING`) and off the poll's
/// path: [`warm_up`] after a restart builds the sweeps of the agents seen
/// within an hour (`IDLE_AGENT`). A failed write is logged; the next poll
/// tries again.
pub fn record_agent_poll(state: &Arc<AppState>, tenant_id: Uuid, agent_id: &str) {
    let slot = state.sweep_cache.slot(tenant_id, agent_id);
    {
        let mut recorded = lock(&slot.poll_recorded);
        if recorded.is_some_and(|at| at.elapsed() < POLL_RECORD_SPACING) {
            return;
        }
        *recorded = Some(std::time::Instant::now());
    }
    let (state, now, agent_id) = (state.clone(), state.clock.now(), agent_id.to_string());
    tokio::spawn(async move {
        let written =
            crate::onboarding::record_component_seen(&state.pool, tenant_id, &agent_id, now).await;
        if let Err(error) = written {
            tracing::warn!(tenant_id = %tenant_id, agent_id, %error,
                "recording the agent's poll failed; its next poll tries again");
            *lock(&slot.poll_recorded) = None;
        }
    });
}

/// At startup: builds, one after another in the background, the sweeps of
/// the edge agents seen within an hour (`IDLE_AGENT`), so that their first
/// polls after a restart are served from the cache instead of waiting for a
/// build. A poll arriving before its sweep is built builds it (or waits for
/// the build in flight), as without this. Stops early at shutdown.
pub async fn warm_up(
    state: Arc<AppState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let since = state.clock.now()
        - chrono::Duration::from_std(IDLE_AGENT).unwrap_or(chrono::Duration::hours(1));
    let agents: Vec<(Uuid, String)> = match sqlx::query_as(
        "SELECT tenant_id, component_id FROM platform.components \
         WHERE component_type = 'agent' AND last_seen_at >= $1 \
         ORDER BY last_seen_at DESC",
    )
    .bind(since)
    .fetch_all(&state.pool)
    .await
    {
        Ok(agents) => agents,
        Err(error) => {
            tracing::warn!(%error, "cannot list recently seen agents; their sweeps are built when they poll");
            return Ok(());
        }
    };
    let mut built = 0usize;
    for (tenant_id, agent_id) in &agents {
        let build = agent_sweep(
            &state.pool,
            &state.sweep_cache,
            *tenant_id,
            agent_id,
            state.clock.now(),
        );
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            result = build => match result {
                Ok(_) => built += 1,
                Err(error) => tracing::warn!(tenant_id = %tenant_id, agent_id, %error,
                    "building the agent's sweep at startup failed; its next poll builds it"),
            },
        }
    }
    if !agents.is_empty() {
        tracing::info!(
            agents = agents.len(),
            built,
            ms = started.elapsed().as_millis() as u64,
            "sweep configs of recently seen agents built"
        );
    }
    Ok(())
}

/// The current sweep of `agent_id` in `tenant_id`, for the agent or an
/// operator asking for it.
pub async fn agent_sweep(
    pool: &PgPool,
    cache: &SweepCache,
    tenant_id: Uuid,
    agent_id: &str,
    now: DateTime<Utc>,
) -> Result<Arc<AgentSweep>, SweepDeliveryError> {
    let tenant = TenantRow::read(pool, tenant_id).await?;
    let slot = cache.slot(tenant_id, agent_id);
    *lock(&slot.asked) = std::time::Instant::now();
    current_sweep(pool, &slot, &tenant, agent_id, now).await
}

/// What an agent's sweep is built from and checked against: the tenant's
/// schema and its generations, read before the sweep is looked at.
struct TenantRow {
    id: Uuid,
    slug: String,
    schema: String,
    data_generation: i64,
    sources_generation: i64,
}

impl TenantRow {
    async fn read(pool: &PgPool, tenant_id: Uuid) -> Result<Self, SweepDeliveryError> {
        let row = sqlx::query(
            "SELECT data_generation, slug, schema_name, sources_generation \
             FROM platform.tenants WHERE id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(pool)
        .await?
        .ok_or(SweepDeliveryError::UnknownTenant(tenant_id))?;
        Ok(Self {
            id: tenant_id,
            slug: row.try_get("slug")?,
            schema: row.try_get("schema_name")?,
            data_generation: row.try_get("data_generation")?,
            sources_generation: row.try_get("sources_generation")?,
        })
    }
}

/// The sweep in `slot`, rebuilt first if it is older than `tenant`'s
/// generations.
async fn current_sweep(
    pool: &PgPool,
    slot: &Slot,
    tenant: &TenantRow,
    agent_id: &str,
    now: DateTime<Utc>,
) -> Result<Arc<AgentSweep>, SweepDeliveryError> {
    // Generations only grow: a sweep built at or after the ones read here
    // holds every change committed before they were read.
    let fresh = |sweep: &AgentSweep| {
        sweep.data_generation >= tenant.data_generation
            && sweep.sources_generation >= tenant.sources_generation
    };
    let mut current = slot.current.lock().await;
    if let Some(hit) = current.sweep.as_ref()
        && fresh(hit)
    {
        return Ok(hit.clone());
    }
    let (slug, schema) = (&tenant.slug, &tenant.schema);
    let started = std::time::Instant::now();
    // Only the changed devices when the sources are as they were; taken
    // out of the slot, so a failure below leaves the next call a full load.
    let held = current
        .devices
        .take()
        .filter(|held| held.sources_generation == tenant.sources_generation);
    let full_reload = held.is_none();
    let ((devices, changed), (sources, broken)) = tokio::try_join!(
        load_devices(pool, tenant, agent_id, held),
        load_sources(pool, tenant)
    )?;
    let loaded = started.elapsed();
    let generations = (tenant.data_generation, tenant.sources_generation);
    // The same devices and settings make the same sweep: only the
    // generations it is fresh for move (a commit that changed nothing a
    // sweep reads, such as last-seen times, or only other agents' devices).
    if !changed
        && devices
            .built_from
            .as_ref()
            .is_some_and(|(s, b)| *s == sources && *b == broken)
        && let Some(previous) = current.sweep.as_ref()
    {
        let sweep = Arc::new(previous.fresh_for(generations));
        tracing::debug!(tenant = %slug, agent_id, load_ms = loaded.as_millis() as u64,
            "sweep config unchanged by the devices changed since");
        current.sweep = Some(sweep.clone());
        current.devices = Some(devices);
        return Ok(sweep);
    }
    // Generating and encoding 10k targets takes a core for tens of
    // milliseconds: off the async workers, so other calls keep flowing.
    let (sweep, generate_time, devices) = tokio::task::spawn_blocking(move || {
        let mut devices = devices;
        let (sweep, generate_time) = build(
            &devices.devices,
            &broken,
            &sources,
            now,
            generations,
            full_reload,
        );
        devices.built_from = Some((sources, broken));
        (sweep, generate_time, devices)
    })
    .await
    .map_err(|e| SweepDeliveryError::Build(e.to_string()))?;
    let sweep = Arc::new(sweep);
    tracing::info!(tenant = %slug, agent_id, targets = sweep.stats.targets, full_reload,
        load_ms = loaded.as_millis() as u64, generate_ms = generate_time.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64, version = %sweep.version, schema = %schema,
        "sweep config rebuilt");
    current.sweep = Some(sweep.clone());
    current.devices = Some(devices);
    Ok(sweep)
}

/// Generates the sweep and encodes its response body; also returns how
/// long generating took. Devices of the sources in `broken` (unusable sweep settings) are left
/// out: never sweep devices without their source's blacklist.
fn build(
    devices: &[SweepDevice],
    broken: &[String],
    sources: &[SweepSource],
    built_at: DateTime<Utc>,
    (data_generation, sources_generation): (i64, i64),
    full_reload: bool,
) -> (AgentSweep, std::time::Duration) {
    let started = std::time::Instant::now();
    let usable: Vec<SweepDevice>;
    let devices = if broken.is_empty() {
        devices
    } else {
        usable = devices
            .iter()
            .filter(|d| {
                d.integration_source_id
                    .as_ref()
                    .is_none_or(|s| !broken.contains(s))
            })
            .cloned()
            .collect();
        &usable
    };
    let (generated, config_json) =
        generate_with_config_json(devices, sources, &SweepDefaults::default());
    let generate_time = started.elapsed();
    let sweep = AgentSweep {
        version: generated.config_version().to_string(),
        built_at,
        body: EncodedBody::with_encoded_sweep(&config_json, &generated.document.encode_proto()),
        document: Arc::new(generated.document),
        stats: generated.stats,
        full_reload,
        data_generation,
        sources_generation,
    };
    (sweep, generate_time)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a device `d` is assigned to the agent `$1` (of tenant `$2`): by
/// the device's own agent, or through an integration source that reported
/// it. A full load (`Lookup::Hashed`) hashes the agent's staged devices
/// once; a reload of a few changed devices (`Lookup::PerDevice`) probes
/// the staging index for each instead. Both say the same.
fn assigned_predicate(schema: &str, lookup: Lookup) -> String {
    let through_source = match lookup {
        Lookup::Hashed => format!(
            "d.uid IN (SELECT dd.device_id FROM {schema}.discovered_devices dd \
             JOIN platform.integration_sources s ON s.id = dd.integration_source_id \
             WHERE s.tenant_id = $2 AND s.agent_id = $1 AND dd.device_id IS NOT NULL)"
        ),
        Lookup::PerDevice => format!(
            "EXISTS (SELECT 1 FROM {schema}.discovered_devices dd \
             JOIN platform.integration_sources s ON s.id = dd.integration_source_id \
             WHERE dd.device_id = d.uid AND s.tenant_id = $2 AND s.agent_id = $1)"
        ),
    };
    format!(
        "d.merged_into IS NULL AND d.deleted_at IS NULL AND (d.agent_id = $1 OR {through_source})"
    )
}

/// How [`assigned_predicate`] finds staged devices.
#[derive(Clone, Copy)]
enum Lookup {
    Hashed,
    PerDevice,
}

/// The agent's devices: `held` brought up to date by reloading the devices
/// changed since its stamp, or every assigned device when `held` is `None`;
/// and whether they differ from `held` (always true for a full load).
async fn load_devices(
    pool: &PgPool,
    tenant: &TenantRow,
    agent_id: &str,
    held: Option<AgentDevices>,
) -> Result<(AgentDevices, bool), SweepDeliveryError> {
    let schema = crate::db::quoted_schema(&tenant.schema)
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    // Rows are decoded as they arrive, while PostgreSQL still sends the
    // rest (a third faster than collecting them first). Columns by position;
    // metadata is decoded straight into the few fields generation reads.
    let device = |row: &sqlx::postgres::PgRow| -> Result<SweepDevice, sqlx::Error> {
        Ok(SweepDevice::new(
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get::<sqlx::types::Json<SweepMetadata>, _>(5)?.0,
        ))
    };
    let Some(mut held) = held else {
        let assigned = assigned_predicate(&schema, Lookup::Hashed);
        let query = format!(
            "SELECT d.uid, d.ip, d.hostname, d.partition, d.discovery_sources, d.metadata, \
                    d.change_stamp \
             FROM {schema}.ocsf_devices d WHERE {assigned}"
        );
        let mut rows = sqlx::query(&query)
            .bind(agent_id)
            .bind(tenant.id)
            .fetch(pool);
        let mut all = AgentDevices::new(tenant.sources_generation);
        while let Some(row) = rows.try_next().await? {
            all.stamp = all.stamp.max(row.try_get(6)?);
            all.put(device(&row)?);
        }
        return Ok((all, true));
    };
    // Every device changed since, assigned or not: one that is no longer
    // assigned leaves the sweep. Its columns are only sent when assigned
    // (`discovery_sources` is never NULL in the table).
    let assigned = assigned_predicate(&schema, Lookup::PerDevice);
    let query = format!(
        "SELECT d.uid, CASE WHEN a.yes THEN d.ip END, CASE WHEN a.yes THEN d.hostname END, \
                CASE WHEN a.yes THEN d.partition END, \
                CASE WHEN a.yes THEN d.discovery_sources END, \
                CASE WHEN a.yes THEN d.metadata END, d.change_stamp \
         FROM {schema}.ocsf_devices d CROSS JOIN LATERAL (SELECT {assigned} AS yes) a \
         WHERE d.change_stamp > $3"
    );
    let mut rows = sqlx::query(&query)
        .bind(agent_id)
        .bind(tenant.id)
        .bind(held.stamp)
        .fetch(pool);
    let (mut stamp, mut changed) = (held.stamp, false);
    while let Some(row) = rows.try_next().await? {
        stamp = stamp.max(row.try_get(6)?);
        if row.try_get::<Option<Vec<String>>, _>(4)?.is_some() {
            held.put(device(&row)?);
            changed = true;
        } else {
            changed |= held.remove(row.try_get(0)?);
        }
    }
    held.stamp = stamp;
    Ok((held, changed))
}

/// The tenant's enabled sources' sweep settings, and the ids of those whose
/// settings are unusable (logged).
async fn load_sources(
    pool: &PgPool,
    tenant: &TenantRow,
) -> Result<(Vec<SweepSource>, Vec<String>), SweepDeliveryError> {
    let (tenant_id, slug) = (tenant.id, &tenant.slug);
    let source_rows = sqlx::query(
        "SELECT id, name, source_type, endpoint, queries, sweep_interval, partition, agent_id, \
                network_blacklist, settings, sync_service_id \
         FROM platform.integration_sources WHERE tenant_id = $1 AND enabled",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?;
    let mut sources = Vec::with_capacity(source_rows.len());
    let mut broken = Vec::new();
    for row in source_rows {
        let id: Uuid = row.try_get("id")?;
        let config: SourceConfig = serde_json::from_value(json!({
            "id": id.to_string(),
            "name": row.try_get::<String, _>("name")?,
            "type": row.try_get::<String, _>("source_type")?,
            "endpoint": row.try_get::<String, _>("endpoint")?,
            "queries": row.try_get::<Value, _>("queries")?,
            "sweep_interval": row.try_get::<Option<String>, _>("sweep_interval")?,
            "partition": row.try_get::<String, _>("partition")?,
            "agent_id": row.try_get::<String, _>("agent_id")?,
            "network_blacklist": row.try_get::<Vec<String>, _>("network_blacklist")?,
            "settings": row.try_get::<Value, _>("settings")?,
            "tenant_id": tenant_id.to_string(),
            "tenant_slug": slug,
            "sync_service_id": row.try_get::<Uuid, _>("sync_service_id")?.to_string(),
        }))?;
        match SweepSource::from_source_config(&config) {
            Ok(source) => sources.push(source),
            Err(error) => {
                tracing::error!(tenant = %slug, integration_id = %id, field = %error.field,
                    error = %error.message, "sweep settings unusable; the source's devices are left out");
                broken.push(id.to_string());
            }
        }
    }
    Ok((sources, broken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_name_the_tenant_unless_they_are_our_own() {
        let (tenant, us, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            refresh_announcement(&format!("{tenant} {other}"), us),
            Ok(Some(tenant))
        );
        assert_eq!(
            refresh_announcement(&format!("{tenant} {us}"), us),
            Ok(None)
        );
        for bad in [
            "",
            "x y",
            &tenant.to_string(),
            &format!("{tenant} not-a-uuid"),
        ] {
            assert_eq!(refresh_announcement(bad, us), Err(bad));
        }
    }

    #[test]
    fn refresh_passes_skip_and_drop_sweeps_nobody_asks_for() {
        let (tenant, other) = (Uuid::new_v4(), Uuid::new_v4());
        let cache = SweepCache::default();
        cache.slot(tenant, "agent-1");
        cache.slot(other, "agent-2");
        let agents: Vec<String> = cache
            .agents_to_refresh(tenant)
            .into_iter()
            .map(|(agent, _)| agent)
            .collect();
        assert_eq!(agents, ["agent-1"]);

        let idle = SweepCache {
            idle_limit: std::time::Duration::ZERO,
            ..SweepCache::default()
        };
        idle.slot(tenant, "agent-1");
        idle.slot(other, "agent-2");
        assert!(idle.agents_to_refresh(tenant).is_empty());
        // Dropped; another tenant's are left to that tenant's passes.
        let kept: Vec<_> = lock(&idle.slots).keys().cloned().collect();
        assert_eq!(kept, [(other, "agent-2".to_string())]);
    }
}
