//! Resolution of a batch against a snapshot: pure, deterministic, no I/O.
//!
//! Per update (the DIRE reference's steps, in order):
//!
//! 1. A `serviceradar:` device id is a service component: kept, never
//!    resolved, merged or given identifiers, and it never holds an active IP.
//! 2. Every strong identifier is looked up (type, value, partition). A device
//!    holding a *different* value under an exclusive key the update carries
//!    (another Armis id, another integration id of the same type, ...) is a
//!    different device and is set aside. Among the rest, the canonical device
//!    is the update's own `sr:` id if it is among them, else the one matched
//!    by the highest-priority identifier, else the most recently seen; the
//!    others are merged into it subject to [`merge_rules`].
//! 3. An update carrying an `sr:` id keeps it.
//! 4. Else the device holding the update's IP in the partition, unless it
//!    contradicts the update's identifiers.
//! 5. Else the deterministic id ([`canonical_id`]); an existing device with
//!    that id (possibly merged: followed to its survivor) is reused.
//!
//! Later updates of a batch see the ids, identifiers and IPs that earlier
//! ones assigned. Identifiers held by a device the update was not allowed to
//! merge with stay where they are. An update's IP moves to its device when
//! another device holds it (the holder's IP is cleared and the move
//! recorded) unless the holder was observed later than the update, and an
//! update older than its device's last observation does not replace the
//! device's IP ("later observation wins" applied to the IP too); an update
//! without strong identifiers never gets here with a held IP, because step 4
//! already remapped it onto the holder.
//!
//! An update identical to the one last applied for its staging row (same
//! [fingerprint](super::observation::fingerprint), device still active) is
//! skipped without being resolved: that is what makes an unchanged re-sync
//! nearly free. If the planned rest of the batch changes such a device, the
//! skipped update is planned after all ([`Plan::replan`]), so a redelivered
//! stream always ends in the rows its first delivery produced.
//!
//! [`merge_rules`]: super::merge_rules
//! [`canonical_id`]: super::canonical_id

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sr_proto::DeviceUpdate;

use super::canonical_id;
use super::device_record::DeviceRecord;
use super::error::DireError;
use super::identifiers::{self, Confidence, Identifier, IdentifierType};
use super::merge_rules::{self, BlockReason, MergeDecision};
use super::observation::{Claim, Observation, StagingKey, observe};
use super::plan::{
    BlockedMerge, DeviceUpsert, IdentifierUpsert, IpMove, IpRelease, MergeRecord, Plan, Resolution,
    StagedDevice,
};
use super::snapshot::{IdentifierKey, Snapshot, SnapshotRequest};
use super::stats::{BatchStats, SkipReason};

/// Merge chains longer than this are treated as ending here (they cannot
/// occur through DIRE; the bound protects against damaged data).
const MAX_FOLLOW: usize = 16;

/// Planner knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// An identifier row's `last_seen` is refreshed only when an observation
    /// is at least this much newer, so that re-syncs do not rewrite every
    /// identifier row (the device row carries exact liveness).
    pub identifier_refresh: Duration,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            identifier_refresh: Duration::hours(1),
        }
    }
}

/// Plans a batch of updates of one tenant against a snapshot that holds
/// everything the batch can touch.
pub fn plan(updates: &[DeviceUpdate], snapshot: &Snapshot, options: &PlanOptions) -> Plan {
    let observations: Vec<Observation> = updates.iter().map(observe).collect();
    let mut applied = applied_updates(&observations, snapshot, &HashSet::new());
    loop {
        let plan = plan_observations(&observations, &applied, snapshot, options);
        if plan.replan.is_empty() {
            return plan;
        }
        for index in &plan.replan {
            applied[*index] = None;
        }
    }
}

/// The outcome of one planning pass over a loaded batch.
#[derive(Debug)]
pub enum PlanPass {
    /// The batch's plan, ready to apply.
    Done(Box<Plan>),
    /// Updates skipped as already applied must be planned after all: load
    /// these lookups into the snapshot and plan again.
    Load(SnapshotRequest),
}

/// Plans a loaded batch once (see [`plan_observations`]). When skipped
/// updates must be planned after all, clears them in `applied` and asks for
/// their lookups. Refuses a plan with an identifier pointing at a device
/// that neither is loaded nor created ([`Plan::dangling_identifier`]).
pub fn plan_pass(
    observations: &[Observation<'_>],
    applied: &mut [Option<String>],
    snapshot: &Snapshot,
    options: &PlanOptions,
) -> Result<PlanPass, DireError> {
    let plan = plan_observations(observations, applied, snapshot, options);
    if plan.replan.is_empty() {
        if let Some(identifier) = plan.dangling_identifier(snapshot) {
            return Err(DireError::DanglingIdentifier {
                kind: identifier.key.kind.to_string(),
                value: identifier.key.value.clone(),
                device_id: identifier.device_id.clone(),
            });
        }
        return Ok(PlanPass::Done(Box::new(plan)));
    }
    for index in &plan.replan {
        applied[*index] = None;
    }
    Ok(PlanPass::Load(SnapshotRequest::for_updates(
        plan.replan.iter().map(|i| &observations[*i]),
    )))
}

/// For each update, the device it was already applied to when DIRE may
/// skip it (see [`Snapshot::applied_device`]); never for devices in
/// `touched` (devices an earlier batch of the same stream changed: an update
/// already applied to them may have to be applied again to give the same
/// result as the first delivery).
pub fn applied_updates(
    observations: &[Observation<'_>],
    snapshot: &Snapshot,
    touched: &HashSet<String>,
) -> Vec<Option<String>> {
    observations
        .iter()
        .map(|obs| {
            snapshot
                .applied_device(obs)
                .filter(|device| !touched.contains(*device))
                .map(str::to_string)
        })
        .collect()
}

/// [`plan`] over normalised updates, skipping those `applied` names. When a
/// planned update changes a device that a skipped one was applied to, the
/// skipped one must be planned after all (replaying it could matter):
/// [`Plan::replan`] then lists them, and the caller plans again without
/// skipping them (loading their lookups first if its snapshot lacks them).
pub fn plan_observations(
    observations: &[Observation<'_>],
    applied: &[Option<String>],
    snapshot: &Snapshot,
    options: &PlanOptions,
) -> Plan {
    let mut state = State::new(snapshot, options);
    for (index, obs) in observations.iter().enumerate() {
        match applied.get(index).and_then(Option::as_ref) {
            Some(device) => state.skip_applied(index, obs, device),
            None => state.process(index, obs),
        }
    }
    let mut plan = state.finish(observations);
    let touched: HashSet<&str> = plan.touched_devices().collect();
    plan.replan = applied
        .iter()
        .enumerate()
        .filter(|(_, device)| device.as_deref().is_some_and(|d| touched.contains(d)))
        .map(|(index, _)| index)
        .collect();
    plan
}

#[derive(Debug, Clone)]
struct IdentState {
    confidence: Confidence,
    last_seen: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Work<'a> {
    record: DeviceRecord,
    /// The row as stored, `None` for devices created by this batch.
    stored: Option<&'a DeviceRecord>,
    /// The IP the stored row holds in the active-IP index.
    stored_active_ip: Option<String>,
    merged_into: Option<String>,
    identifiers: BTreeMap<(IdentifierType, String), IdentState>,
    /// An update of this batch resolved to it.
    resolved: bool,
}

struct Candidate<'o> {
    uid: String,
    best: IdentifierType,
    evidence: Vec<&'o Identifier>,
}

struct Conflict {
    kind: IdentifierType,
    ours: String,
    theirs: String,
}

struct State<'a> {
    snapshot: &'a Snapshot,
    options: &'a PlanOptions,
    devices: HashMap<String, Work<'a>>,
    /// Identifier owners changed by this batch (over the snapshot's).
    identifiers: HashMap<IdentifierKey, String>,
    /// Active-IP holders changed by this batch; `None` = released.
    active_ips: HashMap<(String, String), Option<String>>,
    identifier_writes: BTreeMap<IdentifierKey, IdentifierUpsert>,
    merges: Vec<MergeRecord>,
    blocked: Vec<BlockedMerge>,
    blocked_seen: HashSet<(String, String, BlockReason)>,
    ip_moves: Vec<IpMove>,
    /// Staging key → (index of the observation that stages it, device).
    staged: BTreeMap<StagingKey, (usize, String, DateTime<Utc>)>,
    /// Devices of updates skipped as already applied.
    applied: HashSet<String>,
    resolutions: Vec<Resolution>,
    stats: BatchStats,
}

fn identifier_json(kind: IdentifierType, value: &str, confidence: Confidence) -> Value {
    json!({"type": kind.as_str(), "value": value, "confidence": confidence.as_str()})
}

fn evidence_json(evidence: &[&Identifier]) -> Value {
    Value::Array(
        evidence
            .iter()
            .map(|identifier| {
                identifier_json(identifier.kind, &identifier.value, identifier.confidence)
            })
            .collect(),
    )
}

fn observation_json(obs: &Observation<'_>) -> Value {
    json!({
        "source": obs.source,
        "ip": obs.ip,
        "at": obs.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

/// Conflicts between identifier sets: same exclusive key, different value.
/// `ours` is the side of the device an update resolved to, `theirs` the
/// device that stays apart.
fn conflicts<'x>(
    ours: impl Iterator<Item = (IdentifierType, &'x str)> + Clone,
    theirs: impl Iterator<Item = (IdentifierType, &'x str)>,
) -> Vec<Conflict> {
    let mut found = Vec::new();
    for (kind, their_value) in theirs {
        let Some(their_key) = identifiers::exclusive_key(kind, their_value) else {
            continue;
        };
        for (our_kind, our_value) in ours.clone() {
            if our_kind == kind
                && our_value != their_value
                && identifiers::exclusive_key(our_kind, our_value).as_ref() == Some(&their_key)
            {
                found.push(Conflict {
                    kind,
                    ours: our_value.to_string(),
                    theirs: their_value.to_string(),
                });
            }
        }
    }
    found
}

fn conflicts_json(found: &[Conflict]) -> Value {
    Value::Array(
        found
            .iter()
            .map(|c| json!({"type": c.kind.as_str(), "to_value": c.ours, "from_value": c.theirs}))
            .collect(),
    )
}

impl<'a> State<'a> {
    fn new(snapshot: &'a Snapshot, options: &'a PlanOptions) -> Self {
        Self {
            snapshot,
            options,
            devices: HashMap::new(),
            identifiers: HashMap::new(),
            active_ips: HashMap::new(),
            identifier_writes: BTreeMap::new(),
            merges: Vec::new(),
            blocked: Vec::new(),
            blocked_seen: HashSet::new(),
            ip_moves: Vec::new(),
            staged: BTreeMap::new(),
            applied: HashSet::new(),
            resolutions: Vec::new(),
            stats: BatchStats::default(),
        }
    }

    /// Brings a stored device into the working set; false when unknown.
    fn load(&mut self, uid: &str) -> bool {
        if self.devices.contains_key(uid) {
            return true;
        }
        let Some(stored) = self.snapshot.device(uid) else {
            return false;
        };
        let stored_active_ip = if stored.holds_ip() {
            stored.record.ip.clone()
        } else {
            None
        };
        let work = Work {
            record: stored.record.clone(),
            stored: Some(&stored.record),
            stored_active_ip,
            merged_into: stored.merged_into.clone(),
            identifiers: stored
                .identifiers
                .iter()
                .map(|identifier| {
                    (
                        (identifier.kind, identifier.value.clone()),
                        IdentState {
                            confidence: identifier.confidence,
                            last_seen: identifier.last_seen,
                        },
                    )
                })
                .collect(),
            resolved: false,
        };
        self.devices.insert(uid.to_string(), work);
        true
    }

    /// The working copy of a device the planner loaded or created before
    /// (every caller does; a miss is a planner bug, and failing the batch is
    /// better than writing a device nobody resolved).
    fn work(&mut self, uid: &str) -> &mut Work<'a> {
        self.devices
            .get_mut(uid)
            .expect("the planner loads or creates a device before changing it")
    }

    /// Follows merges to the surviving device.
    fn follow(&mut self, uid: &str) -> String {
        let mut current = uid.to_string();
        for _ in 0..MAX_FOLLOW {
            if !self.load(&current) {
                break;
            }
            match &self.devices[&current].merged_into {
                Some(next) if *next != current => current = next.clone(),
                _ => break,
            }
        }
        current
    }

    /// Current owner of an identifier.
    fn owner(&self, key: &IdentifierKey) -> Option<String> {
        self.identifiers
            .get(key)
            .or_else(|| self.snapshot.identifiers().get(key))
            .cloned()
    }

    /// Current active holder of an IP.
    fn ip_holder(&self, key: &(String, String)) -> Option<String> {
        match self.active_ips.get(key) {
            Some(holder) => holder.clone(),
            None => self.snapshot.active_ips().get(key).cloned(),
        }
    }

    fn last_seen(&self, uid: &str) -> Option<DateTime<Utc>> {
        match self.devices.get(uid) {
            Some(work) => Some(work.record.last_seen),
            None => self.snapshot.device(uid).map(|d| d.record.last_seen),
        }
    }

    /// Identifiers a device holds now (working state, else as stored).
    fn device_identifiers(&self, uid: &str) -> Vec<(IdentifierType, String)> {
        match self.devices.get(uid) {
            Some(work) => work.identifiers.keys().cloned().collect(),
            None => self
                .snapshot
                .device(uid)
                .map(|d| {
                    d.identifiers
                        .iter()
                        .map(|i| (i.kind, i.value.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Conflicts between an update's identifiers (`ours`) and a device's
    /// (`theirs`).
    fn contradictions(&self, uid: &str, identifiers: &[Identifier]) -> Vec<Conflict> {
        let held = self.device_identifiers(uid);
        conflicts(
            identifiers
                .iter()
                .map(|identifier| (identifier.kind, identifier.value.as_str())),
            held.iter().map(|(kind, value)| (*kind, value.as_str())),
        )
    }

    /// An update already applied: nothing to resolve, but it still takes
    /// part in choosing its staging row among the batch's updates of the
    /// same source device.
    fn skip_applied(&mut self, index: usize, obs: &Observation<'_>, device: &str) {
        self.applied.insert(device.to_string());
        self.stage(index, obs, device);
        self.resolutions
            .push(Resolution::Device(device.to_string()));
    }

    fn process(&mut self, index: usize, obs: &Observation<'_>) {
        if obs.bad_integration_source_id {
            self.stats.unstaged_invalid_source += 1;
        }
        let outcome = match &obs.claim {
            Claim::Service(id) => self.service(obs, id),
            Claim::Sr(_) | Claim::None => self.resolve(obs),
        };
        match outcome {
            Ok(uid) => {
                self.stage(index, obs, &uid);
                self.resolutions.push(Resolution::Device(uid));
            }
            Err(reason) => {
                *self.stats.skipped.entry(reason).or_default() += 1;
                self.resolutions.push(Resolution::Skipped(reason));
            }
        }
    }

    fn create(&mut self, uid: &str, obs: &Observation<'_>) {
        if !self.load(uid) {
            self.devices.insert(
                uid.to_string(),
                Work {
                    record: DeviceRecord::new(uid.to_string(), obs.partition.clone(), obs.at),
                    stored: None,
                    stored_active_ip: None,
                    merged_into: None,
                    identifiers: BTreeMap::new(),
                    resolved: false,
                },
            );
        }
    }

    fn service(&mut self, obs: &Observation<'_>, uid: &str) -> Result<String, SkipReason> {
        self.create(uid, obs);
        let work = self.work(uid);
        if work.record.partition != obs.partition {
            return Err(SkipReason::PartitionMismatch);
        }
        work.record
            .observe(&obs.fields, obs.source.as_deref(), obs.metadata(), obs.at);
        if obs.ip.is_some() {
            work.record.ip.clone_from(&obs.ip);
        }
        work.resolved = true;
        Ok(uid.to_string())
    }

    fn resolve(&mut self, obs: &Observation<'_>) -> Result<String, SkipReason> {
        if obs.identifiers.is_empty() && obs.ip.is_none() && obs.claim == Claim::None {
            return Err(SkipReason::NoIdentity);
        }
        let own = match &obs.claim {
            Claim::Sr(id) => Some(self.follow(id)),
            Claim::None | Claim::Service(_) => None,
        };

        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for identifier in &obs.identifiers {
            let key = IdentifierKey {
                kind: identifier.kind,
                value: identifier.value.clone(),
                partition: obs.partition.clone(),
            };
            let Some(owner) = self.owner(&key) else {
                continue;
            };
            let owner = self.follow(&owner);
            match candidates.iter_mut().find(|c| c.uid == owner) {
                Some(candidate) => candidate.evidence.push(identifier),
                None => candidates.push(Candidate {
                    uid: owner,
                    best: identifier.kind,
                    evidence: vec![identifier],
                }),
            }
        }
        let (acceptable, contradicting): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|c| self.contradictions(&c.uid, &obs.identifiers).is_empty());

        let uid = if !acceptable.is_empty() {
            self.choose(&acceptable, own.as_deref())
        } else if let Some(own) = own {
            own
        } else if let Some(holder) = obs
            .ip
            .as_ref()
            .and_then(|ip| self.ip_holder(&(obs.partition.clone(), ip.clone())))
            .filter(|holder| self.contradictions(holder, &obs.identifiers).is_empty())
        {
            holder
        } else {
            match obs.derived_id.clone() {
                Some(id) => self.follow(&id),
                None => return Err(SkipReason::NoIdentity),
            }
        };
        self.create(&uid, obs);
        if self.devices[&uid].record.partition != obs.partition {
            return Err(SkipReason::PartitionMismatch);
        }

        for candidate in &acceptable {
            if candidate.uid != uid {
                self.merge_or_block(&candidate.uid, &uid, &candidate.evidence, obs);
            }
        }
        for candidate in &contradicting {
            if candidate.uid != uid {
                let found = self.contradictions(&candidate.uid, &obs.identifiers);
                self.block(
                    &candidate.uid,
                    &uid,
                    BlockReason::ConflictingIdentifiers,
                    &candidate.evidence,
                    &found,
                    obs,
                );
            }
        }

        let revived = self.devices[&uid].record.deleted;
        let prior_last_seen = self.devices[&uid].record.last_seen;
        {
            let work = self.work(&uid);
            work.record
                .observe(&obs.fields, obs.source.as_deref(), obs.metadata(), obs.at);
            work.resolved = true;
        }
        if revived {
            self.readmit_ip(&uid);
        }
        if let Some(ip) = &obs.ip {
            self.claim_ip(&uid, ip, &obs.partition, obs.at, prior_last_seen);
        }
        for identifier in &obs.identifiers {
            self.assign(&uid, identifier, obs);
        }
        Ok(uid)
    }

    fn choose(&self, acceptable: &[Candidate<'_>], own: Option<&str>) -> String {
        if let Some(own) = own
            && acceptable.iter().any(|c| c.uid == own)
        {
            return own.to_string();
        }
        acceptable
            .iter()
            .min_by(|a, b| {
                a.best
                    .cmp(&b.best)
                    .then_with(|| self.last_seen(&b.uid).cmp(&self.last_seen(&a.uid)))
                    .then_with(|| a.uid.cmp(&b.uid))
            })
            .map(|c| c.uid.clone())
            .unwrap_or_default()
    }

    /// A revived (previously deleted) device takes its stored IP back only
    /// when nobody else holds it now.
    fn readmit_ip(&mut self, uid: &str) {
        let work = &self.devices[uid];
        let Some(ip) = work.record.ip.clone() else {
            return;
        };
        let key = (work.record.partition.clone(), ip);
        match self.ip_holder(&key) {
            Some(holder) if holder != uid => self.work(uid).record.ip = None,
            Some(_) => {}
            None => {
                self.active_ips.insert(key, Some(uid.to_string()));
            }
        }
    }

    /// Gives `uid` the IP an observation made at `at` reports, moving it
    /// from its holder. The later observation wins here too: an observation
    /// older than the device's own last one keeps the device's IP, and one
    /// older than the holder's last observation leaves the holder its IP.
    fn claim_ip(
        &mut self,
        uid: &str,
        ip: &str,
        partition: &str,
        at: DateTime<Utc>,
        prior_last_seen: DateTime<Utc>,
    ) {
        let key = (partition.to_string(), ip.to_string());
        let holder = self.ip_holder(&key);
        if holder.as_deref() == Some(uid) {
            self.work(uid).record.ip = Some(ip.to_string());
            return;
        }
        if self.devices[uid].record.ip.is_some() && at < prior_last_seen {
            return;
        }
        match holder {
            Some(holder) if self.last_seen(&holder).is_some_and(|seen| seen > at) => return,
            Some(holder) => {
                self.load(&holder);
                self.work(&holder).record.ip = None;
                self.ip_moves.push(IpMove {
                    partition: partition.to_string(),
                    ip: ip.to_string(),
                    from_device: holder,
                    to_device: uid.to_string(),
                });
            }
            None => {}
        }
        let previous = self.work(uid).record.ip.replace(ip.to_string());
        if let Some(previous) = previous
            && previous != ip
        {
            let old_key = (partition.to_string(), previous);
            if self.ip_holder(&old_key).as_deref() == Some(uid) {
                self.active_ips.insert(old_key, None);
            }
        }
        self.active_ips.insert(key, Some(uid.to_string()));
    }

    fn write_identifier(
        &mut self,
        key: IdentifierKey,
        device_id: &str,
        confidence: Confidence,
        source: Option<&str>,
        last_seen: DateTime<Utc>,
    ) {
        let is_new = !self.snapshot.identifiers().contains_key(&key);
        let entry = self
            .identifier_writes
            .entry(key.clone())
            .or_insert_with(|| IdentifierUpsert {
                key,
                is_new,
                device_id: device_id.to_string(),
                confidence,
                source: source.map(str::to_string),
                first_seen: last_seen,
                last_seen,
            });
        entry.device_id = device_id.to_string();
        entry.confidence = confidence;
        entry.source = source.map(str::to_string);
        entry.first_seen = entry.first_seen.min(last_seen);
        entry.last_seen = entry.last_seen.max(last_seen);
    }

    fn assign(&mut self, uid: &str, identifier: &Identifier, obs: &Observation<'_>) {
        let key = IdentifierKey {
            kind: identifier.kind,
            value: identifier.value.clone(),
            partition: obs.partition.clone(),
        };
        let local = (identifier.kind, identifier.value.clone());
        let refresh = self.options.identifier_refresh;
        match self.owner(&key) {
            Some(owner) if owner == uid => {
                let work = self.work(uid);
                let write = match work.identifiers.get_mut(&local) {
                    Some(state) => {
                        let stale = obs.at > state.last_seen && obs.at - state.last_seen >= refresh;
                        if state.confidence != identifier.confidence || stale {
                            state.confidence = identifier.confidence;
                            state.last_seen = state.last_seen.max(obs.at);
                            Some(state.last_seen)
                        } else {
                            None
                        }
                    }
                    None => {
                        work.identifiers.insert(
                            local,
                            IdentState {
                                confidence: identifier.confidence,
                                last_seen: obs.at,
                            },
                        );
                        Some(obs.at)
                    }
                };
                if let Some(last_seen) = write {
                    self.write_identifier(
                        key,
                        uid,
                        identifier.confidence,
                        obs.source.as_deref(),
                        last_seen,
                    );
                }
            }
            Some(owner) => {
                // Held elsewhere: only a stale pointer at a device merged
                // into ours is taken over; anything else stays put.
                if self.follow(&owner) != uid {
                    return;
                }
                let state = self
                    .devices
                    .get_mut(&owner)
                    .and_then(|work| work.identifiers.remove(&local));
                let confidence = state.map_or(identifier.confidence, |s| s.confidence);
                self.take_identifier(uid, key, confidence, obs);
            }
            None => self.take_identifier(uid, key, identifier.confidence, obs),
        }
    }

    fn take_identifier(
        &mut self,
        uid: &str,
        key: IdentifierKey,
        confidence: Confidence,
        obs: &Observation<'_>,
    ) {
        self.identifiers.insert(key.clone(), uid.to_string());
        self.work(uid).identifiers.insert(
            (key.kind, key.value.clone()),
            IdentState {
                confidence,
                last_seen: obs.at,
            },
        );
        self.write_identifier(key, uid, confidence, obs.source.as_deref(), obs.at);
    }

    fn merge_or_block(
        &mut self,
        loser: &str,
        survivor: &str,
        evidence: &[&Identifier],
        obs: &Observation<'_>,
    ) {
        let loser_ids = self.device_identifiers(loser);
        let survivor_ids = self.device_identifiers(survivor);
        let found = conflicts(
            survivor_ids.iter().map(|(k, v)| (*k, v.as_str())),
            loser_ids.iter().map(|(k, v)| (*k, v.as_str())),
        );
        let unmerged = self.snapshot.unmerged(loser, survivor);
        match merge_rules::decide(evidence, !found.is_empty(), unmerged) {
            MergeDecision::Merge => self.merge(loser, survivor, evidence, obs),
            MergeDecision::Block(reason) => {
                self.block(loser, survivor, reason, evidence, &found, obs);
            }
        }
    }

    fn block(
        &mut self,
        from: &str,
        to: &str,
        reason: BlockReason,
        evidence: &[&Identifier],
        found: &[Conflict],
        obs: &Observation<'_>,
    ) {
        if !self
            .blocked_seen
            .insert((from.to_string(), to.to_string(), reason))
        {
            return;
        }
        self.blocked.push(BlockedMerge {
            from: from.to_string(),
            to: to.to_string(),
            partition: obs.partition.clone(),
            reason,
            evidence: json!({
                "reason": reason.as_str(),
                "linked_by": evidence_json(evidence),
                "conflicts": conflicts_json(found),
                "observation": observation_json(obs),
            }),
        });
    }

    fn merge(
        &mut self,
        loser: &str,
        survivor: &str,
        evidence: &[&Identifier],
        obs: &Observation<'_>,
    ) {
        let (moved, loser_record) = {
            let work = self.work(loser);
            work.merged_into = Some(survivor.to_string());
            (std::mem::take(&mut work.identifiers), work.record.clone())
        };
        if let Some(ip) = &loser_record.ip {
            let key = (loser_record.partition.clone(), ip.clone());
            if self.ip_holder(&key).as_deref() == Some(loser) {
                self.active_ips.insert(key, None);
            }
        }
        let mut moved_json = Vec::with_capacity(moved.len());
        for ((kind, value), state) in moved {
            moved_json.push(json!({
                "type": kind.as_str(),
                "value": value,
                "partition": loser_record.partition,
                "confidence": state.confidence.as_str(),
            }));
            let key = IdentifierKey {
                kind,
                value: value.clone(),
                partition: loser_record.partition.clone(),
            };
            self.identifiers.insert(key.clone(), survivor.to_string());
            let last_seen = state.last_seen.max(obs.at);
            self.work(survivor).identifiers.insert(
                (kind, value),
                IdentState {
                    confidence: state.confidence,
                    last_seen,
                },
            );
            self.write_identifier(
                key,
                survivor,
                state.confidence,
                obs.source.as_deref(),
                last_seen,
            );
        }
        self.work(survivor).record.absorb(&loser_record);
        self.merges.push(MergeRecord {
            from: loser.to_string(),
            to: survivor.to_string(),
            partition: loser_record.partition.clone(),
            evidence: json!({
                "reason": merge_rules::MERGE_REASON,
                "linked_by": evidence_json(evidence),
                "moved_identifiers": moved_json,
                "observation": observation_json(obs),
            }),
        });
    }

    fn stage(&mut self, index: usize, obs: &Observation<'_>, uid: &str) {
        let Some(key) = &obs.staging else {
            return;
        };
        if self.staged.get(key).is_some_and(|(_, _, at)| *at > obs.at) {
            return;
        }
        self.staged
            .insert(key.clone(), (index, uid.to_string(), obs.at));
    }

    fn finish(mut self, observations: &[Observation<'_>]) -> Plan {
        let applied_only = self
            .applied
            .iter()
            .filter(|uid| !self.devices.contains_key(*uid))
            .count();
        let mut devices: Vec<(String, Work<'a>)> = self.devices.drain().collect();
        devices.sort_by(|a, b| a.0.cmp(&b.0));
        let mut plan = Plan::default();
        for (uid, mut work) in devices {
            // A merged device keeps its IP as history unless an active device
            // holds it now; an active one never keeps an IP another holds.
            if !canonical_id::is_service_id(&uid)
                && let Some(ip) = &work.record.ip
            {
                let key = (work.record.partition.clone(), ip.clone());
                if self.ip_holder(&key).is_some_and(|holder| holder != uid) {
                    work.record.ip = None;
                }
            }
            let release =
                work.stored_active_ip.is_some() && work.stored_active_ip != work.record.ip;
            if release && let Some(ip) = work.stored_active_ip.take() {
                plan.ip_releases.push(IpRelease {
                    device_id: uid.clone(),
                    partition: work.record.partition.clone(),
                    ip,
                });
            }
            let changed = match work.stored {
                None => true,
                Some(stored) => !work.record.same_as(stored, release),
            };
            if changed {
                if work.stored.is_none() {
                    self.stats.new_devices += 1;
                } else {
                    self.stats.updated_devices += 1;
                }
                plan.devices.push(DeviceUpsert {
                    is_new: work.stored.is_none(),
                    record: work.record,
                });
            } else if work.resolved {
                self.stats.unchanged_devices += 1;
            }
        }
        self.stats.unchanged_devices += applied_only as u64;

        // Merges of this batch are the only way a resolved device can stop
        // being canonical before the batch ends.
        let survivors: HashMap<&str, &str> = self
            .merges
            .iter()
            .map(|merge| (merge.from.as_str(), merge.to.as_str()))
            .collect();
        let follow = |uid: &str| -> String {
            let mut current = uid;
            for _ in 0..MAX_FOLLOW {
                match survivors.get(current) {
                    Some(next) => current = next,
                    None => break,
                }
            }
            current.to_string()
        };
        let mut resolutions = std::mem::take(&mut self.resolutions);
        for resolution in &mut resolutions {
            if let Resolution::Device(uid) = resolution {
                *uid = follow(uid);
            }
        }
        for (key, (index, device, _)) in std::mem::take(&mut self.staged) {
            let obs = &observations[index];
            let device_id = follow(&device);
            let unchanged = self.snapshot.staged(&key).is_some_and(|stored| {
                stored.last_seen > obs.at
                    || (stored.content_hash.is_some()
                        && stored.content_hash == obs.fingerprint
                        && stored.device_id.as_deref() == Some(device_id.as_str()))
            });
            if !unchanged {
                let is_new = self.snapshot.staged(&key).is_none();
                plan.staged.push(staged_row(key, obs, device_id, is_new));
            }
        }

        self.stats.updates = observations.len() as u64;
        self.stats.identifiers_written = self.identifier_writes.len() as u64;
        self.stats.merges = self.merges.len() as u64;
        self.stats.blocked_merges = self.blocked.len() as u64;
        self.stats.ip_moves = self.ip_moves.len() as u64;
        self.stats.staged = plan.staged.len() as u64;

        plan.identifiers = self.identifier_writes.into_values().collect();
        plan.ip_moves = self.ip_moves;
        plan.merges = self.merges;
        plan.blocked_merges = self.blocked;
        plan.resolutions = resolutions;
        plan.stats = self.stats;
        plan.reassigned_devices = plan.reassigned(self.snapshot);
        plan.stats.reassigned_devices = plan.reassigned_devices.len() as u64;
        plan
    }
}

fn staged_row(
    key: StagingKey,
    obs: &Observation<'_>,
    device_id: String,
    is_new: bool,
) -> StagedDevice {
    StagedDevice {
        is_new,
        integration_source_id: key.integration_source_id,
        source_device_id: key.source_device_id,
        source: obs.staging_source(),
        device_id,
        partition: obs.partition.clone(),
        ip: obs.ip.clone(),
        ip_addresses: obs.all_ips(),
        mac_addresses: obs.all_macs(),
        hostname: obs.fields.hostname.clone(),
        device_type: obs.fields.device_type.clone(),
        agent_id: obs.fields.agent_id.clone(),
        metadata: obs
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
        raw_data: obs.update.raw_data.clone(),
        sync_run_id: obs.sync_run_id(),
        seen: obs.at,
        content_hash: obs.fingerprint.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
pub(super) mod tests;
