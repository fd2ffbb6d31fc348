//! The heap half of the process's `Profiler`: live allocations by call
//! site, from jemalloc's own profiler, as a flamegraph SVG or a pprof
//! protobuf, for `GET /v1/admin/profile/heap` and `rushhour profile --heap`.
//!
//! Why jemalloc's profiler and not a counting wrapper around the system
//! allocator: a wrapper would have to unwind on every allocation (or
//! every Nth, with its own sampling maths) and would need `unsafe` to
//! implement `GlobalAlloc`; jemalloc samples by bytes allocated (one
//! sample per `2^lg_prof_sample` bytes on average, 512 KiB here), records
//! the stack of each sampled allocation and forgets it when it is freed,
//! so a dump is exactly "what is live, and who allocated it".
//!
//! The binary declares jemalloc its global allocator and says so with
//! [`declare_jemalloc_global`]; a process that did not (a test binary,
//! the `--no-default-features` build) links jemalloc's code unused, and
//! [`support`] tells it so instead of answering an empty profile. The
//! profiler is compiled in with `prof:true,prof_active:false` baked into
//! jemalloc at build time (`.cargo/config.toml`): it costs a counter
//! decrement per allocation until switched on.
//!
//! Two ways to cover a leak, one per operator situation (ADR 0011):
//! - switched on at start (`[profiling] heap = true`,
//!   [`keep_on_from_start`]): a dump shows every sampled allocation live
//!   since start, the whole of "what holds the memory"; two dumps an hour
//!   apart diffed in pprof show what grew;
//! - off until asked (the default): a request switches it on for a window,
//!   dumps what was allocated in it and is still live, then switches it
//!   off and resets (`prof.reset`), so the next window starts clean. A
//!   leak or a growing cache shows up as bytes that outlive the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use domain::ports::{HeapFormat, HeapProfile, HeapWindow, PortError, PortResult};
use jemalloc_pprof::{FlamegraphOptions, JemallocProfCtl, PROF_CTL};
use tokio::sync::Mutex;

/// The flamegraph's title.
const TITLE: &str = "rushhour heap: live bytes by call site";

/// Set by the binary that made jemalloc its global allocator.
static JEMALLOC_IS_GLOBAL: AtomicBool = AtomicBool::new(false);

/// Record that this process allocates through jemalloc (its
/// `#[global_allocator]` is `tikv_jemallocator::Jemalloc`). Call it next to
/// that declaration, before the first heap profile is asked for.
pub fn declare_jemalloc_global() {
    JEMALLOC_IS_GLOBAL.store(true, Ordering::Release);
}

/// `Ok` when this process can take heap profiles, else why not. Checks the
/// declaration before touching jemalloc, so a process that does not use
/// it never initializes it.
pub fn support() -> Result<(), String> {
    if !JEMALLOC_IS_GLOBAL.load(Ordering::Acquire) {
        return Err(
            "this process does not allocate through jemalloc (a build without the `jemalloc` feature, \
                    or not the rushhour binary), so it has no heap profiler"
                .into(),
        );
    }
    if PROF_CTL.is_none() {
        return Err(
            "jemalloc's profiler is not enabled in this binary (opt.prof is false: built without \
                    JEMALLOC_SYS_WITH_MALLOC_CONF=prof:true,…, or overridden by _RJEM_MALLOC_CONF)"
                .into(),
        );
    }
    Ok(())
}

/// Switch jemalloc's profiler on for the life of the process
/// (`[profiling] heap = true`): every later heap profile covers everything
/// live since now. Call at start, before the runtime.
pub fn keep_on_from_start() -> Result<(), String> {
    support()?;
    let ctl = PROF_CTL.as_ref().ok_or("no jemalloc profiler")?;
    let mut ctl = ctl.try_lock().map_err(|_| "jemalloc's profiler is busy".to_owned())?;
    ctl.activate()
        .map_err(|e| format!("cannot switch jemalloc's profiler on: {e}"))
}

/// The process's heap profiler: one dump (or window) at a time.
#[derive(Debug, Default)]
pub struct HeapProfiler {
    running: Arc<Mutex<()>>,
}

impl HeapProfiler {
    /// What was live since start (profiler on from start) or what was
    /// allocated during `window` and is still live at its end.
    pub async fn profile(&self, window: Duration, format: HeapFormat) -> PortResult<HeapProfile> {
        support().map_err(PortError::Unavailable)?;
        let ctl = PROF_CTL
            .as_ref()
            .ok_or_else(|| PortError::Unavailable("no jemalloc profiler".into()))?
            .clone();
        let Ok(running) = self.running.clone().try_lock_owned() else {
            return Err(PortError::Conflict("a heap profile is already being taken".into()));
        };
        // A task of its own, not the request's future: a client that hangs
        // up mid-window drops the request, and the profiler must still be
        // switched off and reset at the window's end.
        tokio::spawn(async move {
            let _running = running;
            let since_start = ctl.lock().await.activated();
            if !since_start {
                ctl.lock()
                    .await
                    .activate()
                    .map_err(|e| PortError::Unavailable(format!("cannot switch jemalloc's profiler on: {e}")))?;
                tokio::time::sleep(window).await;
            }
            let covers = if since_start {
                HeapWindow::SinceStart
            } else {
                HeapWindow::Last(window)
            };
            // Dumping (a file of stacks), symbolizing and rendering are
            // blocking CPU work: off the async workers.
            tokio::task::spawn_blocking(move || {
                let mut ctl = ctl.blocking_lock();
                let body = dump(&mut ctl, format, covers);
                if !since_start && let Err(e) = ctl.deactivate() {
                    tracing::warn!(error = %e, "cannot switch jemalloc's profiler off");
                }
                let body = body.map_err(|e| PortError::Unavailable(format!("cannot take the heap profile: {e}")))?;
                tracing::info!(?covers, ?format, bytes = body.len(), "heap profile taken");
                Ok(HeapProfile { body, window: covers })
            })
            .await
            .map_err(|e| PortError::Unavailable(format!("heap profile thread: {e}")))?
        })
        .await
        .map_err(|e| PortError::Unavailable(format!("heap profile task: {e}")))?
    }
}

/// Dump the live sampled allocations in `format`. jemalloc_pprof answers
/// `anyhow` errors; they travel on as text (into a `PortError`).
fn dump(ctl: &mut JemallocProfCtl, format: HeapFormat, covers: HeapWindow) -> Result<Vec<u8>, String> {
    let profile = ctl.dump_profile().map_err(|e| format!("{e:#}"))?;
    match format {
        HeapFormat::Pprof => Ok(profile.to_pprof(("inuse_space", "bytes"), ("space", "bytes"), None)),
        HeapFormat::Flamegraph => {
            let every = sample_interval(ctl);
            let what = match covers {
                HeapWindow::SinceStart => "allocated since start and still live".to_owned(),
                HeapWindow::Last(d) => format!("allocated in the last {} s and still live", d.as_secs()),
            };
            let subtitle = format!("{what}; one sample per ~{every} allocated");
            if profile.stacks.is_empty() {
                // inferno refuses an empty input; say what that means.
                return Ok(empty_svg(&subtitle).into_bytes());
            }
            let mut opts = FlamegraphOptions::default();
            opts.title = TITLE.into();
            opts.subtitle = Some(subtitle);
            opts.count_name = "bytes".into();
            profile.to_flamegraph(&mut opts).map_err(|e| format!("{e:#}"))
        }
    }
}

/// `2^lg_prof_sample` bytes, in words.
fn sample_interval(ctl: &JemallocProfCtl) -> String {
    let bytes = 1u64 << ctl.lg_sample().min(63);
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A one-line SVG for a profile with no sampled allocation live.
fn empty_svg(subtitle: &str) -> String {
    let text = format!("{TITLE}: no sampled allocation is live ({subtitle})")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"1200\" height=\"60\" \
         xmlns=\"http://www.w3.org/2000/svg\"><text x=\"600\" y=\"34\" text-anchor=\"middle\" \
         font-family=\"Verdana\" font-size=\"14\">{text}</text></svg>\n"
    )
}
