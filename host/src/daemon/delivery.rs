//! Delivering a run's devices: normalise, stamp, pack into JSON-array chunks
//! of at most the chunk budget, and send them as StreamStatus streams of a
//! bounded number of chunks. A run's first streams are small (1, 2, 4, …
//! chunks, up to the configured size), so the gateway starts reconciling
//! while the adapter's first pages are still being read rather than after a
//! full stream's worth. Up to `streams_in_flight` streams await their
//! acknowledgement while the next is built, so the gateway receives and
//! decodes one stream while it commits the previous one; a stream the
//! gateway does not acknowledge is resent with backoff until the run's
//! deadline. Memory is bounded by `chunks_per_stream × (streams_in_flight +
//! 1)` chunks, however large the source.
//!
//! Streams in flight may commit out of order (a retried one after a later
//! one). That is safe: DIRE judges every observation by its own timestamp,
//! not by arrival, and a cursor is committed only after [`Deliverer::flush`]
//! saw every stream before it acknowledged.

use std::collections::VecDeque;
use std::time::Duration;

use sr_proto::chunking::ChunkEncoder;
use sr_proto::{DeviceUpdate, SyncMeta};
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::Delivery;
use super::gateway_client::{GatewayClient, GatewayError};
use crate::normalize::{NormalizeContext, NormalizeStats, normalize};
use crate::sandbox::Device;

/// Why devices could not be delivered.
#[derive(Debug, Error, Clone)]
pub enum DeliveryError {
    /// The gateway refused a stream for what it contained (not retried).
    #[error("the gateway refused the devices: {0}")]
    Refused(String),
    /// The gateway stayed unreachable until the run's deadline.
    #[error("the gateway did not acknowledge the devices before the run's deadline: {0}")]
    Unreachable(String),
    /// The send task died.
    #[error("delivery task failed: {0}")]
    Task(String),
}

/// Counts of a delivery.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryStats {
    /// Devices the gateway acknowledged.
    pub acknowledged: u64,
    /// Streams sent and acknowledged.
    pub streams: u64,
    /// Stream sends retried.
    pub retries: u64,
    /// DeviceUpdates dropped because one alone exceeded the chunk budget.
    pub oversized: u64,
    /// Normalisation counts.
    pub normalization: NormalizeStats,
}

type InFlight = JoinHandle<Result<(u64, u64), DeliveryError>>;

/// Delivers one run's devices.
pub struct Deliverer {
    client: GatewayClient,
    settings: Delivery,
    ctx: NormalizeContext,
    meta: SyncMeta,
    partition: String,
    deadline: Instant,
    encoder: ChunkEncoder,
    scratch: Vec<u8>,
    /// Finished chunks of the stream being built, and their device count.
    stream: Vec<Vec<u8>>,
    stream_devices: u64,
    /// Devices in the chunk the encoder is building.
    chunk_devices: u64,
    /// Streams sent and not yet acknowledged, oldest first.
    in_flight: VecDeque<InFlight>,
    stats: DeliveryStats,
}

impl Deliverer {
    /// A deliverer for one run. `meta` carries the sync service and run ids;
    /// its chunk index is maintained here.
    pub fn new(
        client: GatewayClient,
        settings: Delivery,
        ctx: NormalizeContext,
        meta: SyncMeta,
        deadline: Instant,
    ) -> Self {
        let partition = ctx.partition.clone();
        Self {
            client,
            settings,
            ctx,
            meta,
            partition,
            deadline,
            encoder: ChunkEncoder::new(settings.chunk_bytes),
            scratch: Vec::with_capacity(4096),
            stream: Vec::new(),
            stream_devices: 0,
            chunk_devices: 0,
            in_flight: VecDeque::new(),
            stats: DeliveryStats::default(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> DeliveryStats {
        self.stats
    }

    /// Normalises and queues a batch; sends a stream whenever enough chunks
    /// are full (first waiting for the oldest stream's acknowledgement when
    /// the window of streams in flight is full).
    pub async fn push_devices(&mut self, devices: Vec<Device>) -> Result<(), DeliveryError> {
        for device in devices {
            let Some(update) = normalize(device, &self.ctx, &mut self.stats.normalization) else {
                continue;
            };
            self.push_update(update).await?;
        }
        Ok(())
    }

    async fn push_update(&mut self, mut update: DeviceUpdate) -> Result<(), DeliveryError> {
        self.serialize(&mut update);
        if !self.encoder.fits(self.scratch.len()) && self.encoder.pending() > 0 {
            self.close_chunk();
            // The element now opens the next chunk: stamp its index again.
            self.serialize(&mut update);
        }
        match self.encoder.push_serialized(&self.scratch) {
            Ok(finished) => {
                debug_assert!(finished.is_none(), "fits() was checked");
                self.chunk_devices += 1;
            }
            Err(error) => {
                self.stats.oversized += 1;
                tracing::warn!(
                    integration_source_id = ?self.ctx.integration_source_id,
                    run_id = %self.meta.sync_run_id,
                    error = %error,
                    "device dropped"
                );
                return Ok(());
            }
        }
        // Every stream started is either acknowledged or still in flight.
        let started = self.stats.streams + self.in_flight.len() as u64;
        if self.stream.len() >= stream_target(self.settings.chunks_per_stream, started) {
            self.send_stream().await?;
        }
        Ok(())
    }

    fn serialize(&mut self, update: &mut DeviceUpdate) {
        update.sync_meta = Some(self.meta.clone());
        self.scratch.clear();
        // Serialising a DeviceUpdate (strings, maps, JSON values) cannot fail.
        let _ = serde_json::to_writer(&mut self.scratch, update);
    }

    fn close_chunk(&mut self) {
        if let Some(chunk) = self.encoder.finish() {
            self.stream.push(chunk.payload);
            self.stream_devices += self.chunk_devices;
            self.chunk_devices = 0;
            self.meta.chunk_index += 1;
        }
    }

    /// Sends everything queued so far, including the partial chunk, and
    /// waits until the gateway acknowledged all of it. Call before
    /// committing a cursor and at the end of a run.
    pub async fn flush(&mut self) -> Result<(), DeliveryError> {
        self.close_chunk();
        self.send_stream().await?;
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    /// Starts sending the finished chunks as one stream, once the window of
    /// streams in flight has room.
    async fn send_stream(&mut self) -> Result<(), DeliveryError> {
        while self.in_flight.len() >= self.settings.streams_in_flight.max(1) {
            self.wait_oldest().await?;
        }
        if self.stream.is_empty() {
            return Ok(());
        }
        let payloads = std::mem::take(&mut self.stream);
        let devices = std::mem::take(&mut self.stream_devices);
        let client = self.client.clone();
        let partition = self.partition.clone();
        let (initial, max, deadline) = (
            self.settings.retry_initial,
            self.settings.retry_max,
            self.deadline,
        );
        let run_id = self.meta.sync_run_id.clone();
        tracing::debug!(run_id, chunks = payloads.len(), devices, "stream sent");
        self.in_flight.push_back(tokio::spawn(async move {
            send_with_retry(
                &client, &payloads, &partition, initial, max, deadline, &run_id,
            )
            .await
            .map(|retries| (devices, retries))
        }));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<(), DeliveryError> {
        if let Some(handle) = self.in_flight.pop_front() {
            let (devices, retries) = handle
                .await
                .map_err(|e| DeliveryError::Task(e.to_string()))??;
            self.stats.acknowledged += devices;
            self.stats.streams += 1;
            self.stats.retries += retries;
        }
        Ok(())
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        for handle in self.in_flight.drain(..) {
            handle.abort();
        }
    }
}

/// Chunks the next stream is sent at: 1, 2, 4, … for a run's first
/// streams, then `chunks_per_stream` (at least 1).
fn stream_target(chunks_per_stream: usize, streams_started: u64) -> usize {
    let ramp = u32::try_from(streams_started)
        .ok()
        .and_then(|n| 1usize.checked_shl(n))
        .unwrap_or(usize::MAX);
    ramp.min(chunks_per_stream).max(1)
}

/// Sends one stream until acknowledged, refused, or past the deadline.
/// Returns how many retries it took.
async fn send_with_retry(
    client: &GatewayClient,
    payloads: &[Vec<u8>],
    partition: &str,
    initial: Duration,
    max: Duration,
    deadline: Instant,
    run_id: &str,
) -> Result<u64, DeliveryError> {
    let mut delay = initial;
    let mut retries = 0;
    loop {
        match client.stream_results(payloads, partition).await {
            Ok(()) => return Ok(retries),
            Err(error) if error.is_transient() => {
                if Instant::now() + delay > deadline {
                    return Err(DeliveryError::Unreachable(error.to_string()));
                }
                tracing::warn!(run_id, retry_in = ?delay, error = %error, "stream not acknowledged; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(max);
                retries += 1;
            }
            Err(GatewayError::Status { code, message, .. }) => {
                return Err(DeliveryError::Refused(format!("{code:?}: {message}")));
            }
            Err(error) => return Err(DeliveryError::Refused(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stream_target;

    #[test]
    fn streams_double_from_one_chunk_up_to_the_configured_size() {
        let sizes: Vec<usize> = (0..6).map(|n| stream_target(8, n)).collect();
        assert_eq!(sizes, [1, 2, 4, 8, 8, 8]);
        assert_eq!(stream_target(8, 200), 8);
        assert_eq!(stream_target(3, 2), 3);
        assert_eq!(stream_target(0, 0), 1);
    }
}
