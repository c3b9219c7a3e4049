//! Where log lines go: per-thread memory buffers that one background thread
//! writes to stdout every `FLUSH_EVERY` (sooner when a buffer passes
//! `WAKE_AT` bytes). A request pays an uncontended lock and a copy per
//! line, never a write system call or a thread wake-up (a channel per line
//! woke the writer thread for every request, and one buffer shared by the
//! workers made them queue on its lock). Lines of one thread stay in order;
//! lines of different threads interleave batch by batch (each carries its
//! time). Past `MAX_WAITING` bytes in a thread's buffer, lines are dropped
//! and counted, so a flood or a stuck stdout cannot take memory or slow
//! requests; the count is logged.

use std::{
    cell::RefCell,
    io::Write,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

const FLUSH_EVERY: Duration = Duration::from_millis(20);
const WAKE_AT: usize = 256 * 1024;
/// Per logging thread; the workers and the few threads that log.
const MAX_WAITING: usize = 4 * 1024 * 1024;

/// One thread's waiting lines.
#[derive(Default)]
struct Shard {
    waiting: Mutex<Vec<u8>>,
}

struct Shared {
    /// Tells the thread-local shard lists which writer a shard belongs to.
    id: u64,
    shards: Mutex<Vec<Arc<Shard>>>,
    /// Set (under its lock) when a shard passes `WAKE_AT` or at close.
    wake: (Mutex<bool>, Condvar),
    dropped: AtomicU64,
    closed: AtomicBool,
}

static NEXT_WRITER_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's shard of each writer it has logged to.
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

/// The `MakeWriter` the log layer writes each line to.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread; dropping it writes what is left and stops it.
pub struct BatchGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts the thread writing to `out`.
    pub fn spawn(out: impl Write + Send + 'static) -> std::io::Result<(Self, BatchGuard)> {
        let shared = Arc::new(Shared::new());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || run(&thread_shared, out))?;
        Ok((Self { shared: shared.clone() }, BatchGuard { shared, thread: Some(thread) }))
    }

    fn append(&self, line: &[u8]) {
        let shared = &self.shared;
        let appended = SHARDS.try_with(|cell| {
            let Ok(mut shards) = cell.try_borrow_mut() else { return false };
            let shard = match shards.iter().find(|(id, _)| *id == shared.id) {
                Some((_, shard)) => shard.clone(),
                None => {
                    let shard = Arc::new(Shard::default());
                    if let Ok(mut all) = shared.shards.lock() {
                        all.push(shard.clone());
                    }
                    shards.push((shared.id, shard.clone()));
                    shard
                }
            };
            shared.append_to(&shard, line);
            true
        });
        if appended != Ok(true) {
            // Thread teardown or re-entry: a shard of its own for this line.
            let shard = Arc::new(Shard::default());
            shared.append_to(&shard, line);
            if let Ok(mut all) = shared.shards.lock() {
                all.push(shard);
            }
        }
    }
}

impl Shared {
    fn new() -> Self {
        Self {
            id: NEXT_WRITER_ID.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
            wake: (Mutex::new(false), Condvar::new()),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn append_to(&self, shard: &Shard, line: &[u8]) {
        let Ok(mut waiting) = shard.waiting.lock() else { return };
        if waiting.len() + line.len() > MAX_WAITING {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = waiting.len();
        waiting.extend_from_slice(line);
        if before < WAKE_AT && waiting.len() >= WAKE_AT {
            drop(waiting);
            self.notify();
        }
    }

    fn notify(&self) {
        let (flag, condvar) = &self.wake;
        if let Ok(mut woken) = flag.lock() {
            *woken = true;
            condvar.notify_one();
        }
    }

    /// Sleeps until `FLUSH_EVERY` has passed or someone calls `notify`.
    fn sleep(&self) {
        let (flag, condvar) = &self.wake;
        let Ok(woken) = flag.lock() else { return };
        let Ok((mut woken, _)) = condvar.wait_timeout_while(woken, FLUSH_EVERY, |woken| !*woken) else { return };
        *woken = false;
    }

    /// Moves every shard's lines into `batch`, forgetting the shards of
    /// threads that have ended.
    fn collect(&self, batch: &mut Vec<u8>, spare: &mut Vec<u8>) {
        let Ok(mut shards) = self.shards.lock() else { return };
        shards.retain(|shard| {
            if let Ok(mut waiting) = shard.waiting.lock()
                && !waiting.is_empty()
            {
                // Swap rather than copy under the lock: the thread keeps logging.
                std::mem::swap(&mut *waiting, spare);
                drop(waiting);
                batch.extend_from_slice(spare);
                spare.clear();
                if spare.capacity() > 4 * WAKE_AT {
                    *spare = Vec::new();
                }
            }
            // Only this list holds it: its thread has ended and it is empty.
            Arc::strong_count(shard) > 1
        });
    }
}

fn run(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut spare = Vec::new();
    loop {
        let closed = shared.closed.load(Ordering::Acquire);
        if !closed {
            shared.sleep();
        }
        shared.collect(&mut batch, &mut spare);
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ =
                writeln!(out, "{{\"level\":\"WARN\",\"message\":\"{dropped} log lines dropped: output too slow\"}}");
        }
        if !batch.is_empty() {
            // A failed write (closed stdout) is not worth stopping the server for.
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
        }
        if closed {
            return;
        }
        if batch.capacity() > 4 * WAKE_AT {
            batch = Vec::with_capacity(64 * 1024);
        }
    }
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line's writer: the layer calls `write_all` once per line.
pub struct LineWriter<'a>(&'a BatchWriter);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::telemetry::Captured as Sink;

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_drops() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::spawn(sink.clone()).unwrap();
        for n in 0..10_000 {
            writer.make_writer().write_all(format!("line {n}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_000);
        assert_eq!((lines[0], lines[9_999]), ("line 0", "line 9999"));
    }

    #[test]
    fn lines_of_every_thread_are_written_each_thread_in_order() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..2_000 {
                        writer.make_writer().write_all(format!("{thread} {n}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for thread in 0..4 {
            let numbers: Vec<u32> = text
                .lines()
                .filter_map(|line| line.strip_prefix(&format!("{thread} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(numbers, (0..2_000).collect::<Vec<_>>(), "thread {thread}");
        }
    }

    #[test]
    fn lines_beyond_the_bound_are_dropped_and_reported() {
        // Without a thread: fill this thread's buffer directly.
        let writer = BatchWriter { shared: Arc::new(Shared::new()) };
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..6 {
            writer.append(&line);
        }
        let waiting: usize = writer.shared.shards.lock().unwrap().iter().map(|s| s.waiting.lock().unwrap().len()).sum();
        assert_eq!(waiting, MAX_WAITING);
        assert_eq!(writer.shared.dropped.load(Ordering::Relaxed), 2);
    }
}
