//! The queue's durability with faults injected: reopened after a crash (the queue leaked,
//! never closed), torn and damaged writes, a full queue, segment rolls, and a full volume (a
//! tmpfs of a few MiB, filled: these tests need root to mount it).

use std::fs::OpenOptions;
use std::io::Write;

use e2e::small_disk::SmallDisk;

use super::*;

const LIMITS: BatchLimits = BatchLimits {
    max_items: 1_000_000,
    max_bytes: 1 << 30,
    linger: Duration::ZERO,
};

fn config() -> QueueConfig {
    QueueConfig {
        max_bytes: 1 << 20,
        segment_bytes: 1 << 16,
    }
}

fn payload(n: u32) -> Vec<u8> {
    format!("record {n} ")
        .repeat(1 + n as usize % 7)
        .into_bytes()
}

/// Everything in the queue, acknowledged as it is read.
fn drain(queue: &Queue) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while queue.stats().records > 0 {
        let batch = queue.next_batch(LIMITS).expect("batch");
        out.extend(batch.records.iter().map(|r| r.payload.clone()));
        queue.ack(&batch).expect("ack");
    }
    out
}

/// A crash: the queue is never closed, its files stay as they are.
fn crash(queue: Queue) {
    std::mem::forget(queue);
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn acknowledged_pushes_survive_a_crash_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), config()).expect("open");
    for n in 0..100 {
        queue.push_blocking(payload(n), n).expect("push");
    }
    let stats = queue.stats();
    assert_eq!(stats.records, 100);
    assert_eq!(stats.items, (0..100).sum::<u64>());
    crash(queue);

    let queue = Queue::open(dir.path(), config()).expect("reopen");
    assert_eq!(queue.stats().records, 100);
    let got = drain(&queue);
    assert_eq!(got, (0..100).map(payload).collect::<Vec<_>>());
}

#[test]
fn acknowledged_records_are_not_delivered_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), config()).expect("open");
    for n in 0..10 {
        queue.push_blocking(payload(n), 1).expect("push");
    }
    let batch = queue
        .next_batch(BatchLimits {
            max_items: 4,
            ..LIMITS
        })
        .expect("batch");
    assert_eq!(batch.records.len(), 4);
    queue.ack(&batch).expect("ack");
    // Read but not acknowledged: delivered again after a crash (at least once).
    let unacked = queue
        .next_batch(BatchLimits {
            max_items: 3,
            ..LIMITS
        })
        .expect("batch");
    assert_eq!(unacked.records.len(), 3);
    crash(queue);

    let queue = Queue::open(dir.path(), config()).expect("reopen");
    assert_eq!(drain(&queue), (4..10).map(payload).collect::<Vec<_>>());
    crash(queue);
    let queue = Queue::open(dir.path(), config()).expect("reopen again");
    assert_eq!(queue.stats().records, 0);
}

#[test]
fn a_torn_tail_is_skipped_and_what_precedes_it_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), config()).expect("open");
    for n in 0..5 {
        queue.push_blocking(payload(n), 1).expect("push");
    }
    crash(queue);
    let last = segments(dir.path()).pop().expect("a segment");
    // Half a record: a header announcing 1000 bytes, and 10 of them.
    let mut torn = Vec::new();
    encode_record(&mut torn, &[7u8; 1000], 1, 1);
    torn.truncate(HEADER as usize + 10);
    OpenOptions::new()
        .append(true)
        .open(&last)
        .expect("segment")
        .write_all(&torn)
        .expect("append");

    let queue = Queue::open(dir.path(), config()).expect("reopen");
    assert_eq!(queue.stats().corrupt_at_open, 1);
    // New records go to a new segment and are read after the old ones.
    queue.push_blocking(payload(5), 1).expect("push");
    assert_eq!(drain(&queue), (0..6).map(payload).collect::<Vec<_>>());
}

#[test]
fn a_damaged_record_ends_its_segment_but_not_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), config()).expect("open");
    for n in 0..3 {
        queue.push_blocking(payload(n), 1).expect("push");
    }
    crash(queue);
    let first = segments(dir.path()).pop().expect("a segment");
    let queue = Queue::open(dir.path(), config()).expect("reopen");
    for n in 3..6 {
        queue.push_blocking(payload(n), 1).expect("push");
    }
    crash(queue);
    // Flip a byte in the second record's payload.
    let mut bytes = std::fs::read(&first).expect("read");
    let second = MAGIC.len() + HEADER as usize + payload(0).len() + HEADER as usize + 2;
    bytes[second] ^= 0xff;
    std::fs::write(&first, bytes).expect("write");

    let queue = Queue::open(dir.path(), config()).expect("reopen");
    assert_eq!(queue.stats().corrupt_at_open, 1);
    let got = drain(&queue);
    assert_eq!(got, [payload(0), payload(3), payload(4), payload(5)]);
}

#[test]
fn a_full_queue_refuses_and_accepts_again_once_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = QueueConfig {
        max_bytes: 10 * (HEADER + 100),
        segment_bytes: 1 << 16,
    };
    let queue = Queue::open(dir.path(), config).expect("open");
    for _ in 0..10 {
        queue.push_blocking(vec![1; 100], 1).expect("fits");
    }
    assert!(matches!(
        queue.push_blocking(vec![1; 100], 1),
        Err(QueueError::Full { .. })
    ));
    assert!(matches!(
        queue.push_blocking(vec![1; 10_000], 1),
        Err(QueueError::TooLarge { .. })
    ));
    let batch = queue
        .next_batch(BatchLimits {
            max_items: 2,
            ..LIMITS
        })
        .expect("batch");
    queue.ack(&batch).expect("ack");
    queue.push_blocking(vec![1; 100], 1).expect("fits again");
    queue.push_blocking(vec![1; 100], 1).expect("fits again");
    assert!(matches!(
        queue.push_blocking(vec![1; 100], 1),
        Err(QueueError::Full { .. })
    ));
}

#[test]
fn segments_roll_and_delivered_ones_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = QueueConfig {
        max_bytes: 1 << 20,
        segment_bytes: 1024,
    };
    let queue = Queue::open(dir.path(), config).expect("open");
    for n in 0..50 {
        queue.push_blocking(vec![n as u8; 200], 1).expect("push");
    }
    assert!(
        segments(dir.path()).len() >= 10,
        "{:?}",
        segments(dir.path())
    );
    crash(queue);
    let queue = Queue::open(dir.path(), config).expect("reopen");
    let got = drain(&queue);
    assert_eq!(got, (0..50).map(|n| vec![n as u8; 200]).collect::<Vec<_>>());
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "only the segment being written"
    );
    crash(queue);
    let queue = Queue::open(dir.path(), config).expect("reopen");
    assert_eq!(queue.stats().records, 0);
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "earlier empty segments removed"
    );
}

#[test]
fn batches_respect_items_and_bytes_and_linger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), config()).expect("open");
    for _ in 0..10 {
        queue.push_blocking(vec![0; 100], 10).expect("push");
    }
    let by_items = BatchLimits {
        max_items: 35,
        max_bytes: 1 << 20,
        linger: Duration::from_secs(60),
    };
    assert_eq!(queue.next_batch(by_items).expect("batch").records.len(), 3);
    let by_bytes = BatchLimits {
        max_items: 1000,
        max_bytes: 250,
        linger: Duration::from_secs(60),
    };
    assert_eq!(queue.next_batch(by_bytes).expect("batch").records.len(), 2);
    // Not full: waits for the linger of the oldest record.
    let lingering = BatchLimits {
        max_items: 1000,
        max_bytes: 1 << 20,
        linger: Duration::from_millis(300),
    };
    let start = std::time::Instant::now();
    let batch = queue.next_batch(lingering).expect("batch");
    assert_eq!(batch.records.len(), 10);
    assert!(start.elapsed() < Duration::from_secs(5));
    // One record over the limits still goes, alone.
    let tiny = BatchLimits {
        max_items: 1,
        max_bytes: 1,
        linger: Duration::ZERO,
    };
    assert_eq!(queue.next_batch(tiny).expect("batch").records.len(), 1);
}

#[test]
fn concurrent_pushes_share_fsyncs_and_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Arc::new(Queue::open(dir.path(), config()).expect("open"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                for n in 0..50 {
                    queue.push_blocking(payload(t * 100 + n), 1).expect("push");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("joined");
    }
    assert_eq!(queue.stats().records, 400);
    let mut got = drain(&queue);
    got.sort();
    let mut want: Vec<_> = (0..8)
        .flat_map(|t| (0..50).map(move |n| payload(t * 100 + n)))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_closed_queue_wakes_its_consumer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Arc::new(Queue::open(dir.path(), config()).expect("open"));
    let consumer = std::thread::spawn({
        let queue = Arc::clone(&queue);
        move || queue.next_batch(LIMITS).is_none()
    });
    std::thread::sleep(Duration::from_millis(50));
    queue.close();
    assert!(consumer.join().expect("joined"));
    assert!(matches!(
        queue.push_blocking(vec![1], 1),
        Err(QueueError::Closed)
    ));
}

/// The queue's directory on a tmpfs of its own.
fn small_disk() -> (SmallDisk, PathBuf) {
    let disk = SmallDisk::mount(4 << 20);
    let dir = disk.path().join("logs");
    std::fs::create_dir(&dir).expect("queue directory");
    (disk, dir)
}

fn refused_for_lack_of_space(pushed: Result<(), QueueError>) {
    match pushed {
        Err(error) => assert!(error.is_disk_full(), "{error}"),
        Ok(()) => panic!("a record the disk has no room for was acknowledged"),
    }
}

#[test]
fn a_write_that_fails_part_way_leaves_the_queue_as_it_was() {
    let (disk, dir) = small_disk();
    let queue = Queue::open(&dir, config()).expect("open");
    for n in 0..3 {
        queue.push_blocking(payload(n), 1).expect("push");
    }
    // Room for a quarter of the next record: its write fails part way.
    let filler = disk.fill(64 << 10);
    refused_for_lack_of_space(queue.push_blocking(vec![9; 256 << 10], 1));
    assert_eq!(queue.stats().records, 3);
    filler.remove();

    for n in 3..13 {
        queue
            .push_blocking(payload(n), 1)
            .expect("push after space was freed");
    }
    let batch = queue.next_batch(LIMITS).expect("batch");
    assert_eq!(batch.corrupt, 0);
    assert_eq!(
        batch
            .records
            .iter()
            .map(|r| r.payload.clone())
            .collect::<Vec<_>>(),
        (0..13).map(payload).collect::<Vec<_>>()
    );
    crash(queue);

    let queue = Queue::open(&dir, config()).expect("reopen");
    assert_eq!(queue.stats().corrupt_at_open, 0);
    assert_eq!(drain(&queue), (0..13).map(payload).collect::<Vec<_>>());
}

#[test]
fn a_volume_too_full_for_a_segment_refuses_appends_until_it_has_room() {
    let (disk, dir) = small_disk();
    let queue = Queue::open(&dir, config()).expect("open");
    queue.push_blocking(payload(0), 1).expect("push");
    crash(queue);

    let filler = disk.fill(0);
    let queue = Queue::open(&dir, config()).expect("opens on a full volume");
    assert_eq!(queue.stats().records, 1);
    refused_for_lack_of_space(queue.push_blocking(payload(1), 1));
    assert_eq!(segments(&dir).len(), 1, "no half-made segment stays");
    filler.remove();

    queue
        .push_blocking(payload(2), 1)
        .expect("push once there is room");
    crash(queue);
    let queue = Queue::open(&dir, config()).expect("reopen");
    assert_eq!(queue.stats().corrupt_at_open, 0);
    assert_eq!(drain(&queue), [payload(0), payload(2)]);
}

#[test]
fn a_segment_that_cannot_be_begun_refuses_only_what_it_would_hold() {
    let (disk, dir) = small_disk();
    let config = QueueConfig {
        max_bytes: 1 << 20,
        segment_bytes: 1024,
    };
    let queue = Queue::open(&dir, config).expect("open");
    queue.push_blocking(vec![1; 600], 1).expect("push");
    let filler = disk.fill(0);
    // Past the segment's size: the next record needs a new segment, which finds no room.
    refused_for_lack_of_space(queue.push_blocking(vec![2; 600], 1));
    filler.remove();
    queue
        .push_blocking(vec![3; 600], 1)
        .expect("push once there is room");
    crash(queue);
    let queue = Queue::open(&dir, config).expect("reopen");
    assert_eq!(queue.stats().corrupt_at_open, 0);
    assert_eq!(drain(&queue), [vec![1; 600], vec![3; 600]]);
}

#[test]
fn records_pushed_after_a_restart_on_a_drained_queue_survive_the_next_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), config()).expect("open");
    for n in 0..5 {
        queue.push_blocking(payload(n), 1).expect("push");
    }
    assert_eq!(drain(&queue), (0..5).map(payload).collect::<Vec<_>>());
    crash(queue);

    // The cursor points into a segment that this start removes as delivered: the segment
    // it begins must not be taken for that one.
    let queue = Queue::open(dir.path(), config()).expect("reopen");
    queue.push_blocking(payload(5), 1).expect("push");
    crash(queue);
    let queue = Queue::open(dir.path(), config()).expect("reopen again");
    assert_eq!(drain(&queue), [payload(5)]);
}
