//! The durable queue of one signal: append-only segment files of checksummed records on the
//! data volume, written by one thread that fsyncs each group of appends together, and read
//! by one consumer that acknowledges what it delivered.
//!
//! ```text
//! telemetry/<signal>/
//!   00000000000000000007.seg   segment: MAGIC, then records
//!   00000000000000000008.seg   the segment being written (a new one at every start)
//!   cursor                     "<seq> <offset>": the first record not yet acknowledged
//! ```
//!
//! A record is `len u32 | crc32 u32 | enqueued_ms u64 | items u32 | payload[len]`, little
//! endian; the checksum covers everything after itself. [`Queue::push`] returns only when
//! the record is fsynced (and a new segment's directory entry too), so an acknowledged
//! record survives `kill -9` and power loss. At start every segment from the cursor on is
//! scanned; a scan stops at the first record that is incomplete or fails its checksum (the
//! tail of a write cut short), and those bytes are never read again.
//!
//! A write that fails while running (a full volume, a failed fsync) leaves the queue as it
//! was before: the records are refused, and the segment is cut back to its last record, or
//! given up for a new one if it cannot be. Records are written at the segment's recorded end,
//! never at the file's own position, which a failed write leaves beyond it.
//!
//! Delivery is at least once: the cursor is written after a delivery, so a crash between
//! the two sends the batch again. The queue holds at most `max_bytes` of records; a push
//! that does not fit is refused with [`QueueError::Full`], never dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use plumbing::clock;
use tracing::{debug, warn};

#[cfg(test)]
mod tests;

const MAGIC: &[u8; 8] = b"OTQSEG01";
const HEADER: u64 = 20;
/// How many pushes one fsync covers at most.
const MAX_GROUP: usize = 512;
const CURSOR: &str = "cursor";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    #[error("a record of {len} bytes can never fit a queue of {max} bytes")]
    TooLarge { len: u64, max: u64 },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the queue's writer has stopped")]
    Closed,
}

impl QueueError {
    /// A write that found no room on the volume.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, QueueError::Io { source, .. } if plumbing::disk::is_full(source))
    }

    /// The same failure, for another sender of the group it ended.
    fn again(&self) -> QueueError {
        match self {
            QueueError::Full { used, max } => QueueError::Full {
                used: *used,
                max: *max,
            },
            QueueError::TooLarge { len, max } => QueueError::TooLarge {
                len: *len,
                max: *max,
            },
            QueueError::Io {
                action,
                path,
                source,
            } => QueueError::Io {
                action,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            QueueError::Closed => QueueError::Closed,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// The most record bytes (headers included) held at once.
    pub max_bytes: u64,
    /// A segment is closed once it reaches this size.
    pub segment_bytes: u64,
}

/// One record, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub payload: Vec<u8>,
    pub items: u32,
    pub enqueued_ms: u64,
}

/// Records read from the head of the queue, to be acknowledged with [`Queue::ack`].
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Records found damaged while reading (counted, skipped, acknowledged with the batch).
    pub corrupt: u64,
    count: usize,
}

impl Batch {
    pub fn items(&self) -> u64 {
        self.records.iter().map(|r| u64::from(r.items)).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.records.iter().map(|r| r.payload.len() as u64).sum()
    }
}

/// Limits of one [`Queue::next_batch`].
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_items: u64,
    pub max_bytes: u64,
    /// How long the oldest record may wait for others to fill the batch.
    pub linger: Duration,
}

/// The figures of [`Queue::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub records: u64,
    pub items: u64,
    pub bytes: u64,
    pub oldest_enqueued_ms: Option<u64>,
    /// Damaged records skipped when the queue was opened.
    pub corrupt_at_open: u64,
}

#[derive(Debug)]
pub struct Queue {
    shared: Arc<Shared>,
    appends: Mutex<Option<mpsc::Sender<Append>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    config: QueueConfig,
    state: Mutex<State>,
    /// Signalled when records become readable or the queue closes.
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    /// Every record not yet acknowledged, oldest first.
    index: VecDeque<Entry>,
    bytes: u64,
    items: u64,
    /// Segments that may still hold unacknowledged records, and the one being written.
    segments: VecDeque<u64>,
    /// Where the next record will be written: the head's position when the index is empty.
    write_seq: u64,
    write_offset: u64,
    /// The number of the next segment begun: past every segment and the cursor, so that a
    /// new segment is never taken for one already delivered.
    next_seq: u64,
    corrupt_at_open: u64,
    closed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    offset: u64,
    len: u32,
    items: u32,
    enqueued_ms: u64,
}

impl Entry {
    fn size(&self) -> u64 {
        HEADER + u64::from(self.len)
    }
}

#[derive(Debug)]
struct Append {
    payload: Vec<u8>,
    items: u32,
    reply: tokio::sync::oneshot::Sender<Result<(), QueueError>>,
}

impl Queue {
    /// Opens (creating it if needed) the queue in `dir`: scans what a previous run left and
    /// starts the writing thread on a new segment. A volume too full for a new segment does
    /// not keep the queue from opening: what it holds is delivered, and appends are refused
    /// until one can be begun.
    pub fn open(dir: &Path, config: QueueConfig) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            state: Mutex::new(recover(dir)?),
            changed: Condvar::new(),
        });
        let mut segment = None;
        match begin_segment(&shared, &mut segment) {
            Ok(()) => {}
            Err(error) if error.is_disk_full() => {
                warn!(%error, "no room for a new queue segment; appends are refused until there is");
            }
            Err(error) => return Err(error),
        }
        let (sender, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name(format!(
                "queue-{}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ))
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_loop(&shared, segment, &receiver)
            })
            .map_err(io_error("start the writer of", dir))?;
        Ok(Queue {
            shared,
            appends: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Appends a record; `Ok` once it is on disk.
    pub async fn push(&self, payload: Vec<u8>, items: u32) -> Result<(), QueueError> {
        let answer = self.hand_over(payload, items)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// [`Queue::push`] for the tests, which run outside the runtime.
    #[cfg(test)]
    pub fn push_blocking(&self, payload: Vec<u8>, items: u32) -> Result<(), QueueError> {
        let answer = self.hand_over(payload, items)?;
        answer.blocking_recv().map_err(|_| QueueError::Closed)?
    }

    /// Gives a record to the writer thread; the answer comes once it is on disk. The lock on
    /// the sender is released before anyone waits for that.
    fn hand_over(
        &self,
        payload: Vec<u8>,
        items: u32,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), QueueError>>, QueueError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let appends = lock(&self.appends);
        let sender = appends.as_ref().ok_or(QueueError::Closed)?;
        sender
            .send(Append {
                payload,
                items,
                reply,
            })
            .map_err(|_| QueueError::Closed)?;
        Ok(answer)
    }

    /// Waits for records at the head of the queue and returns as many as `limits` allow (at
    /// least one, even one over the limits), once the batch is full or the oldest has
    /// lingered long enough. `None` once the queue is closed. Blocks: call it from a thread
    /// of its own.
    pub fn next_batch(&self, limits: BatchLimits) -> Option<Batch> {
        let shared = &self.shared;
        let mut state = lock(&shared.state);
        loop {
            if state.closed {
                return None;
            }
            if let Some(first) = state.index.front() {
                let (count, full) = fitting(&state.index, limits);
                let due = first.enqueued_ms + limits.linger.as_millis() as u64;
                let now = u64::try_from(clock::now_ms()).unwrap_or_default();
                if full || now >= due {
                    let entries: Vec<Entry> = state.index.iter().take(count).copied().collect();
                    drop(state);
                    return Some(self.read(&entries));
                }
                state = shared
                    .changed
                    .wait_timeout(state, Duration::from_millis(due - now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            } else {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Reads the payloads of `entries` (outside the lock: only [`Queue::ack`], called by the
    /// same consumer, removes segments).
    fn read(&self, entries: &[Entry]) -> Batch {
        let mut records = Vec::with_capacity(entries.len());
        let mut corrupt = 0;
        let mut open: Option<(u64, File)> = None;
        for entry in entries {
            if open.as_ref().is_none_or(|(seq, _)| *seq != entry.seq) {
                let path = segment_path(&self.shared.dir, entry.seq);
                open = File::open(&path).ok().map(|file| (entry.seq, file));
            }
            let record = open
                .as_ref()
                .and_then(|(_, file)| read_at(file, entry.offset).ok().flatten());
            match record {
                Some((record, _)) if record.payload.len() == entry.len as usize => {
                    records.push(record)
                }
                _ => {
                    warn!(dir = %self.shared.dir.display(), seq = entry.seq, offset = entry.offset, "queued record damaged on disk; skipped");
                    corrupt += 1;
                }
            }
        }
        Batch {
            records,
            corrupt,
            count: entries.len(),
        }
    }

    /// Removes `batch`'s records from the queue: the cursor moves past them and segments
    /// left with nothing unacknowledged are deleted.
    pub fn ack(&self, batch: &Batch) -> Result<(), QueueError> {
        let shared = &self.shared;
        let (cursor, obsolete) = {
            let mut state = lock(&shared.state);
            for _ in 0..batch.count {
                if let Some(entry) = state.index.pop_front() {
                    state.bytes -= entry.size();
                    state.items -= u64::from(entry.items);
                }
            }
            let cursor = state
                .index
                .front()
                .map_or((state.write_seq, state.write_offset), |e| (e.seq, e.offset));
            let mut obsolete = Vec::new();
            while state.segments.front().is_some_and(|seq| *seq < cursor.0) {
                obsolete.extend(state.segments.pop_front());
            }
            (cursor, obsolete)
        };
        // The cursor first: a crash between the two leaves a cursor past deleted segments,
        // which recovery tolerates, never one before them.
        write_cursor(&shared.dir, cursor)?;
        for seq in obsolete {
            let path = segment_path(&shared.dir, seq);
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "cannot delete a delivered segment");
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> QueueStats {
        let state = lock(&self.shared.state);
        QueueStats {
            records: state.index.len() as u64,
            items: state.items,
            bytes: state.bytes,
            oldest_enqueued_ms: state.index.front().map(|e| e.enqueued_ms),
            corrupt_at_open: state.corrupt_at_open,
        }
    }

    /// Stops the writer after the pushes already sent, and wakes a waiting consumer, whose
    /// [`Queue::next_batch`] then returns `None`.
    pub fn close(&self) {
        lock(&self.appends).take();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
        lock(&self.shared.state).closed = true;
        self.shared.changed.notify_all();
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.close();
    }
}

/// How many entries from the front fit `limits` (at least one), and whether the batch is
/// full: a limit is reached, or the next record would cross it.
fn fitting(index: &VecDeque<Entry>, limits: BatchLimits) -> (usize, bool) {
    let (mut items, mut bytes, mut count) = (0u64, 0u64, 0usize);
    for entry in index {
        let next_items = items + u64::from(entry.items);
        let next_bytes = bytes + u64::from(entry.len);
        if count > 0 && (next_items > limits.max_items || next_bytes > limits.max_bytes) {
            return (count, true);
        }
        (items, bytes, count) = (next_items, next_bytes, count + 1);
        if items >= limits.max_items || bytes >= limits.max_bytes {
            return (count, true);
        }
    }
    (count, false)
}

/// The segment the writer thread appends to.
#[derive(Debug)]
struct Segment {
    seq: u64,
    file: File,
    /// The end of the records on disk and in the index: where the next one is written. Every
    /// write is positioned here, never at the file's own position, which a write that failed
    /// part way leaves beyond it.
    end: u64,
}

/// Records written by the writer thread but not yet fsynced, with their senders.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    appends: Vec<(Entry, Append)>,
}

/// `segment` is `None` when there is none to write to (one that could not be created, or
/// cut back after a failed write): the next append begins a new one first.
fn write_loop(shared: &Shared, mut segment: Option<Segment>, appends: &mpsc::Receiver<Append>) {
    while let Ok(first) = appends.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match appends.try_recv() {
                Ok(append) => group.push(append),
                Err(_) => break,
            }
        }
        write_group(shared, &mut segment, group);
    }
}

/// Writes a group of appends with one fsync (one per segment it fills), then makes them
/// readable and answers them. A write that fails leaves the queue exactly as it was before
/// it: its records are not indexed, their senders are told, and the segment is cut back to
/// its end; the rest of the group is refused with the same error.
fn write_group(shared: &Shared, segment: &mut Option<Segment>, group: Vec<Append>) {
    let config = shared.config;
    let used = lock(&shared.state).bytes;
    let mut taken = 0u64;
    let mut pending = Pending::default();
    let mut failed: Option<QueueError> = None;
    let now = u64::try_from(clock::now_ms()).unwrap_or_default();
    for append in group {
        let size = HEADER + append.payload.len() as u64;
        if size > config.max_bytes {
            let _ = append.reply.send(Err(QueueError::TooLarge {
                len: size,
                max: config.max_bytes,
            }));
            continue;
        }
        if used + taken + size > config.max_bytes {
            let _ = append.reply.send(Err(QueueError::Full {
                used: used + taken,
                max: config.max_bytes,
            }));
            continue;
        }
        if let Some(error) = &failed {
            let _ = append.reply.send(Err(error.again()));
            continue;
        }
        // A full segment is closed (what it holds synced first) and a new one begun.
        let start = segment.as_ref().map(|s| s.end + pending.bytes.len() as u64);
        let roll = start
            .is_none_or(|start| start > MAGIC.len() as u64 && start + size > config.segment_bytes);
        let ready = if roll {
            commit(shared, segment, &mut pending).and_then(|()| begin_segment(shared, segment))
        } else {
            Ok(())
        };
        // A segment that was begun is there; without one, the failure that left none.
        let current = ready.and_then(|()| segment.as_ref().ok_or(QueueError::Closed));
        let current = match current {
            Ok(current) => current,
            Err(error) => {
                let _ = append.reply.send(Err(error.again()));
                failed = Some(error);
                continue;
            }
        };
        let entry = Entry {
            seq: current.seq,
            offset: current.end + pending.bytes.len() as u64,
            len: append.payload.len() as u32,
            items: append.items,
            enqueued_ms: now,
        };
        encode_record(&mut pending.bytes, &append.payload, append.items, now);
        taken += size;
        pending.appends.push((entry, append));
    }
    if failed.is_none() {
        // Its senders have their answer already, whatever it is.
        let _ = commit(shared, segment, &mut pending);
    }
}

/// Writes the pending records at the segment's end and fsyncs them; then indexes them and
/// tells their senders. If that fails the senders are told so, and the segment is cut back
/// to its end; one that cannot be is given up, and the next append begins a new one.
fn commit(
    shared: &Shared,
    segment: &mut Option<Segment>,
    pending: &mut Pending,
) -> Result<(), QueueError> {
    let appends = std::mem::take(&mut pending.appends);
    let bytes = std::mem::take(&mut pending.bytes);
    if appends.is_empty() {
        return Ok(());
    }
    let Some(current) = segment.as_mut() else {
        // Records are only ever laid out against a segment.
        return Err(QueueError::Closed);
    };
    let path = segment_path(&shared.dir, current.seq);
    let written = current
        .file
        .write_all_at(&bytes, current.end)
        .map_err(io_error("write", &path))
        .and_then(|()| sync(&current.file, &path));
    if let Err(error) = written {
        warn!(%error, "telemetry queue write failed; the records were refused and the queue is as before");
        for (_, append) in appends {
            let _ = append.reply.send(Err(error.again()));
        }
        let cut = current
            .file
            .set_len(current.end)
            .map_err(io_error("truncate", &path))
            .and_then(|()| sync(&current.file, &path));
        if let Err(cut) = cut {
            warn!(error = %cut, "cannot cut a queue segment back after a failed write; the next record begins a new segment");
            *segment = None;
        }
        return Err(error);
    }
    current.end += bytes.len() as u64;
    {
        let mut state = lock(&shared.state);
        state.write_seq = current.seq;
        state.write_offset = current.end;
        for (entry, _) in &appends {
            state.bytes += entry.size();
            state.items += u64::from(entry.items);
            state.index.push_back(*entry);
        }
    }
    shared.changed.notify_all();
    for (_, append) in appends {
        let _ = append.reply.send(Ok(()));
    }
    Ok(())
}

/// Begins the segment after the current one (or after the last one known) and writes to it
/// from now on.
fn begin_segment(shared: &Shared, segment: &mut Option<Segment>) -> Result<(), QueueError> {
    let seq = match segment {
        Some(current) => current.seq + 1,
        None => lock(&shared.state).next_seq,
    };
    let file = create_segment(&shared.dir, seq)?;
    let end = MAGIC.len() as u64;
    {
        let mut state = lock(&shared.state);
        state.segments.push_back(seq);
        state.write_seq = seq;
        state.write_offset = end;
        state.next_seq = seq + 1;
    }
    *segment = Some(Segment { seq, file, end });
    Ok(())
}

fn encode_record(buffer: &mut Vec<u8>, payload: &[u8], items: u32, enqueued_ms: u64) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&enqueued_ms.to_le_bytes());
    crc.update(&items.to_le_bytes());
    crc.update(payload);
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc.finalize().to_le_bytes());
    buffer.extend_from_slice(&enqueued_ms.to_le_bytes());
    buffer.extend_from_slice(&items.to_le_bytes());
    buffer.extend_from_slice(payload);
}

/// The record at `offset`, and its size; `None` where there is no whole, intact record.
fn read_at(file: &File, offset: u64) -> io::Result<Option<(Record, u64)>> {
    let mut header = [0u8; HEADER as usize];
    if !read_exact_at(file, &mut header, offset)? {
        return Ok(None);
    }
    let word =
        |range: std::ops::Range<usize>| -> [u8; 4] { header[range].try_into().unwrap_or_default() };
    let len = u32::from_le_bytes(word(0..4));
    let crc = u32::from_le_bytes(word(4..8));
    let enqueued_ms = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    let items = u32::from_le_bytes(word(16..20));
    // A length past the end of the file is a torn or damaged header; do not allocate for it.
    let end = file.metadata()?.len();
    if offset + HEADER + u64::from(len) > end {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_exact_at(file, &mut payload, offset + HEADER)? {
        return Ok(None);
    }
    let mut check = crc32fast::Hasher::new();
    check.update(&header[8..]);
    check.update(&payload);
    if check.finalize() != crc {
        return Ok(None);
    }
    Ok(Some((
        Record {
            payload,
            items,
            enqueued_ms,
        },
        HEADER + u64::from(len),
    )))
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Rebuilds the index from the segments on disk, from the cursor on.
fn recover(dir: &Path) -> Result<State, QueueError> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io_error("read", dir))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            name.to_str()?.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    seqs.sort_unstable();
    let (cursor_seq, cursor_offset) = read_cursor(dir);
    let next_seq = seqs.last().map_or(cursor_seq, |last| cursor_seq.max(*last)) + 1;
    let mut state = State {
        index: VecDeque::new(),
        bytes: 0,
        items: 0,
        segments: VecDeque::new(),
        write_seq: next_seq,
        write_offset: MAGIC.len() as u64,
        next_seq,
        corrupt_at_open: 0,
        closed: false,
    };
    for seq in seqs {
        let path = segment_path(dir, seq);
        if seq < cursor_seq {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let start = if seq == cursor_seq {
            cursor_offset.max(MAGIC.len() as u64)
        } else {
            MAGIC.len() as u64
        };
        let file = File::open(&path).map_err(io_error("open", &path))?;
        let mut magic = [0u8; 8];
        if !read_exact_at(&file, &mut magic, 0).map_err(io_error("read", &path))? || &magic != MAGIC
        {
            // A segment created but never written (a crash right after its creation).
            debug!(path = %path.display(), "empty or foreign queue segment removed");
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let end = file.metadata().map_err(io_error("read", &path))?.len();
        let mut offset = start;
        while offset < end {
            match read_at(&file, offset).map_err(io_error("read", &path))? {
                Some((record, size)) => {
                    let entry = Entry {
                        seq,
                        offset,
                        len: record.payload.len() as u32,
                        items: record.items,
                        enqueued_ms: record.enqueued_ms,
                    };
                    state.bytes += entry.size();
                    state.items += u64::from(entry.items);
                    state.index.push_back(entry);
                    offset += size;
                }
                None => {
                    warn!(path = %path.display(), offset, lost_bytes = end - offset, "queue segment ends in an incomplete or damaged record (a write cut short); what follows is skipped");
                    state.corrupt_at_open += 1;
                    break;
                }
            }
        }
        if state.index.back().is_some_and(|e| e.seq == seq) {
            state.segments.push_back(seq);
        } else {
            // Nothing left to deliver in it: an empty segment of an earlier start.
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(state)
}

fn read_cursor(dir: &Path) -> (u64, u64) {
    let mut text = String::new();
    let read = File::open(dir.join(CURSOR)).and_then(|mut f| f.read_to_string(&mut text));
    if read.is_err() {
        return (0, 0);
    }
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    match (words.next(), words.next()) {
        (Some(Ok(seq)), Some(Ok(offset))) => (seq, offset),
        _ => (0, 0),
    }
}

/// Replaces the cursor file atomically. Not fsynced: a cursor lost to a power cut only
/// sends some records again, which at-least-once delivery allows.
/// One that cannot be written (a full volume) leaves no temporary file behind.
fn write_cursor(dir: &Path, (seq, offset): (u64, u64)) -> Result<(), QueueError> {
    let tmp = dir.join("cursor.tmp");
    let written = std::fs::write(&tmp, format!("{seq} {offset}\n"))
        .map_err(io_error("write", &tmp))
        .and_then(|()| std::fs::rename(&tmp, dir.join(CURSOR)).map_err(io_error("rename", &tmp)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// Creates segment `seq` with its magic, fsynced with its directory entry, so that records
/// acknowledged in it are found after a crash.
/// One that cannot be made whole is removed again, so that a full volume is left with no
/// half-made segment.
fn create_segment(dir: &Path, seq: u64) -> Result<File, QueueError> {
    let path = segment_path(dir, seq);
    let created = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(&path)
        .map_err(io_error("create", &path))
        .and_then(|mut file| {
            file.write_all(MAGIC).map_err(io_error("write", &path))?;
            sync(&file, &path)?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("sync", dir))?;
            Ok(file)
        });
    if created.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    created
}

fn sync(file: &File, path: &Path) -> Result<(), QueueError> {
    file.sync_data().map_err(io_error("sync", path))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> QueueError {
    let path = path.to_path_buf();
    move |source| QueueError::Io {
        action,
        path,
        source,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
