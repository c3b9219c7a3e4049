//! Where log lines go: a memory buffer that one background thread writes to
//! stdout every `FLUSH_EVERY` (sooner when `WAKE_AT` bytes wait). A request
//! pays a short lock and a copy per line, never a write system call or a
//! thread wake-up (a channel per line woke the writer thread for every
//! request, which cost more than the rest of the access log). Past
//! `MAX_WAITING` bytes, lines are dropped and counted, so a flood or a
//! stuck stdout cannot take memory or slow requests; the count is logged.

use std::{
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
const MAX_WAITING: usize = 16 * 1024 * 1024;

struct Shared {
    waiting: Mutex<Vec<u8>>,
    wake: Condvar,
    dropped: AtomicU64,
    closed: AtomicBool,
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
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Vec::with_capacity(64 * 1024)),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || run(&thread_shared, out))?;
        Ok((Self { shared: shared.clone() }, BatchGuard { shared, thread: Some(thread) }))
    }

    fn append(&self, line: &[u8]) {
        let Ok(mut waiting) = self.shared.waiting.lock() else { return };
        if waiting.len() + line.len() > MAX_WAITING {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = waiting.len();
        waiting.extend_from_slice(line);
        if before < WAKE_AT && waiting.len() >= WAKE_AT {
            self.shared.wake.notify_one();
        }
    }
}

fn run(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let closed = shared.closed.load(Ordering::Acquire);
        {
            let Ok(mut waiting) = shared.waiting.lock() else { return };
            if waiting.is_empty() && !closed {
                waiting = match shared.wake.wait_timeout(waiting, FLUSH_EVERY) {
                    Ok((guard, _)) => guard,
                    Err(_) => return,
                };
            }
            std::mem::swap(&mut *waiting, &mut batch);
        }
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
        self.shared.wake.notify_one();
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

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

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
    fn lines_beyond_the_bound_are_dropped_and_reported() {
        // Without a thread: fill the buffer directly.
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let writer = BatchWriter { shared: shared.clone() };
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..20 {
            writer.append(&line);
        }
        assert_eq!(shared.waiting.lock().unwrap().len(), MAX_WAITING);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 4);
    }
}
