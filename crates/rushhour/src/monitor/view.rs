//! What `rushhour monitor` shows, as pure functions of [`Screen`]: the
//! ratatui frame ([`draw`]) and the plain-text snapshot of `--once`
//! ([`snapshot_text`]), plus the key reader thread. Kept apart from the
//! polling loop so tests draw frames on `TestBackend` without a server or
//! a terminal.

use api::{FiguresView, QueueDepth};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// What the monitor knows: the last good figures and when they came, and
/// whether the latest poll failed.
pub struct Screen {
    pub url: String,
    pub refresh: Duration,
    pub paused: bool,
    pub started: Instant,
    pub last: Option<(FiguresView, Instant)>,
    /// Why the latest poll failed; `None` once one succeeds.
    pub error: Option<String>,
}

impl Screen {
    pub fn new(url: String, refresh: Duration) -> Self {
        Self {
            url,
            refresh,
            paused: false,
            started: Instant::now(),
            last: None,
            error: None,
        }
    }

    /// Take one poll's answer at `now`.
    pub fn update(&mut self, answer: Result<FiguresView, String>, now: Instant) {
        match answer {
            Ok(f) => {
                self.last = Some((f, now));
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// How old the figures on screen are while the server is not
    /// answering; `None` while it is.
    pub fn stale_for(&self, now: Instant) -> Option<Duration> {
        self.error.as_ref()?;
        let since = self.last.as_ref().map_or(self.started, |(_, at)| *at);
        Some(now.saturating_duration_since(since))
    }
}

/// A key the monitor reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Quit,
    Pause,
    /// Anything else, or a resize: draw again.
    Redraw,
}

/// Read keys on a thread of its own (crossterm's reads block) and hand
/// them over; the channel closes if reading fails.
pub fn spawn_key_reader() -> tokio::sync::mpsc::Receiver<Key> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        loop {
            if tx.is_closed() {
                return;
            }
            match event::poll(Duration::from_millis(200)) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => return,
            }
            let key = match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                    KeyCode::Char('p') | KeyCode::Char(' ') => Key::Pause,
                    _ => Key::Redraw,
                },
                Ok(_) => Key::Redraw,
                Err(_) => return,
            };
            // A full channel means the loop is busy drawing: a dropped
            // redraw costs nothing, and quit is sent again on the next press.
            let _ = tx.try_send(key);
        }
    });
    rx
}

// ------------------------------------------------------------ formatting

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn ms(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{} ms", num(v)))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn uptime(secs: u64) -> String {
    format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
}

fn totals(queues: &[QueueDepth]) -> (u64, u64, u64) {
    queues
        .iter()
        .fold((0, 0, 0), |(r, run, d), q| (r + q.ready, run + q.running, d + q.dead))
}

/// The header's figures, one line: what an operator looks at first.
fn header_line(f: &FiguresView) -> String {
    let n = &f.now;
    let (ready, running, dead) = totals(&f.queues);
    format!(
        "in {}/s  out {}/s  p99 {}  confirm p99 {}  lag {}  jobs ready {} running {} dead {}  cache {}  dead letters {}  streams {}",
        num(n.intake_per_sec),
        num(n.confirmed_per_sec),
        ms(n.intake_p99_ms),
        ms(n.confirm_p99_ms),
        n.lag_total,
        ready,
        running,
        dead,
        pct(n.cache_hit_ratio),
        n.dead_letters,
        n.open_streams,
    )
}

/// `rushhour monitor --once`: the figures as plain text.
pub fn snapshot_text(url: &str, f: &FiguresView) -> String {
    let mut out = String::new();
    let n = &f.now;
    let _ = writeln!(
        out,
        "rushhour monitor  {url}  instance {} ({})  up {}",
        f.instance,
        f.role,
        uptime(f.uptime_secs)
    );
    let _ = writeln!(out, "{}", header_line(f));
    let _ = writeln!(
        out,
        "intake p50 {}  confirm p50 {}  batch avg {}",
        ms(n.intake_p50_ms),
        ms(n.confirm_p50_ms),
        n.batch_size_avg.map_or_else(|| "–".to_owned(), num)
    );
    let _ = writeln!(out, "\nprocessors");
    let _ = writeln!(out, "  {:>9} {:>8} {:>12} {:>12}", "partition", "lag", "next", "end");
    for p in &f.partitions {
        let _ = writeln!(
            out,
            "  {:>9} {:>8} {:>12} {:>12}",
            p.partition, p.lag, p.next_offset, p.end_offset
        );
    }
    let _ = writeln!(out, "\njob queues");
    let _ = writeln!(
        out,
        "  {:<12} {:>7} {:>9} {:>7} {:>9} {:>6}",
        "queue", "ready", "scheduled", "running", "done", "dead"
    );
    for q in &f.queues {
        let _ = writeln!(
            out,
            "  {:<12} {:>7} {:>9} {:>7} {:>9} {:>6}",
            q.queue, q.ready, q.scheduled, q.running, q.done, q.dead
        );
    }
    let _ = writeln!(out, "\nsync runs");
    if f.sync_runs.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for r in &f.sync_runs {
        let _ = writeln!(
            out,
            "  {:<9} {:<14} fetched {:>7} changed {:>7} errors {:>3}  {} ms",
            r.kind,
            r.outcome,
            r.fetched,
            r.changed,
            r.errors,
            r.finished_at - r.started_at
        );
    }
    out
}

// --------------------------------------------------------------- drawing

/// A sparkline's bars from a figure series: nulls as 0, scaled by `scale`
/// so fractional figures (ms, ratios) keep their shape.
fn bars<T: Copy>(series: &[T], value: impl Fn(T) -> Option<f64>, scale: f64) -> Vec<u64> {
    series
        .iter()
        .map(|v| value(*v).map_or(0, |x| (x * scale).max(0.0).round() as u64))
        .collect()
}

/// Draw one frame of the monitor.
pub fn draw(frame: &mut Frame, screen: &Screen, now: Instant) {
    let stale = screen.stale_for(now);
    let [title, banner, header, sparks, panels, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(stale.is_some())),
        Constraint::Length(3),
        Constraint::Length(5),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let who = screen.last.as_ref().map_or_else(
        || "waiting for the first answer".to_owned(),
        |(f, _)| format!("{} ({})  up {}", f.instance, f.role, uptime(f.uptime_secs)),
    );
    let mut spans = vec![
        Span::styled("rushhour monitor ", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" {}  {who}", screen.url)),
    ];
    if screen.paused {
        spans.push(Span::styled(
            "  PAUSED",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), title);

    if let Some(d) = stale {
        let why = screen.error.as_deref().unwrap_or("");
        let what = if screen.last.is_some() {
            format!(" STALE  last good answer {} ago  ({why})", age(d))
        } else {
            format!(" STALE  no answer yet after {}  ({why})", age(d))
        };
        frame.render_widget(
            Paragraph::new(what).style(
                Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            ),
            banner,
        );
    }

    let border = if stale.is_some() { Color::Red } else { Color::Green };
    let Some((f, _)) = screen.last.as_ref() else {
        frame.render_widget(Block::bordered().border_style(Style::new().fg(border)), header);
        return;
    };
    frame.render_widget(
        Paragraph::new(header_line(f)).block(Block::bordered().border_style(Style::new().fg(border)).title(" now ")),
        header,
    );

    let s = &f.series;
    let spark_areas: [Rect; 4] = Layout::horizontal([Constraint::Ratio(1, 4); 4]).areas(sparks);
    let lines: [(String, Vec<u64>, Color); 4] = [
        (
            format!(" in/s {} ", num(f.now.intake_per_sec)),
            bars(&s.intake_per_sec, Some, 100.0),
            Color::Cyan,
        ),
        (
            format!(" out/s {} ", num(f.now.confirmed_per_sec)),
            bars(&s.confirmed_per_sec, Some, 100.0),
            Color::Green,
        ),
        (
            format!(" p99 {} ", ms(f.now.intake_p99_ms)),
            bars(&s.intake_p99_ms, |v| v, 100.0),
            Color::Yellow,
        ),
        (
            format!(" lag {} ", f.now.lag_total),
            bars(&s.lag_total, |v| Some(v as f64), 1.0),
            Color::Magenta,
        ),
    ];
    for ((label, data, color), area) in lines.into_iter().zip(spark_areas) {
        // The newest samples that fit, right-aligned like htop's meters.
        let width = area.width.saturating_sub(2) as usize;
        let data = &data[data.len().saturating_sub(width)..];
        frame.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(label))
                .data(data)
                .style(Style::new().fg(color)),
            area,
        );
    }

    let [procs, queues, syncs] = Layout::horizontal([
        Constraint::Percentage(28),
        Constraint::Percentage(40),
        Constraint::Percentage(32),
    ])
    .areas(panels);
    let bold = Style::new().add_modifier(Modifier::BOLD);
    frame.render_widget(
        Table::new(
            f.partitions.iter().map(|p| {
                Row::new([
                    p.partition.to_string(),
                    p.lag.to_string(),
                    p.next_offset.to_string(),
                    p.end_offset.to_string(),
                ])
            }),
            [
                Constraint::Length(4),
                Constraint::Length(7),
                Constraint::Min(6),
                Constraint::Min(6),
            ],
        )
        .header(Row::new(["part", "lag", "next", "end"]).style(bold))
        .block(Block::bordered().title(" processors ")),
        procs,
    );
    frame.render_widget(
        Table::new(
            f.queues.iter().map(|q| {
                let style = if q.dead > 0 {
                    Style::new().fg(Color::Red)
                } else {
                    Style::new()
                };
                Row::new([
                    q.queue.clone(),
                    q.ready.to_string(),
                    q.scheduled.to_string(),
                    q.running.to_string(),
                    q.done.to_string(),
                    q.dead.to_string(),
                ])
                .style(style)
            }),
            [
                Constraint::Min(8),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(5),
                Constraint::Length(7),
                Constraint::Length(5),
            ],
        )
        .header(Row::new(["queue", "ready", "sched", "run", "done", "dead"]).style(bold))
        .block(Block::bordered().title(" job queues ")),
        queues,
    );
    frame.render_widget(
        Table::new(
            f.sync_runs.iter().map(|r| {
                Row::new([
                    r.kind.clone(),
                    r.outcome.clone(),
                    r.fetched.to_string(),
                    r.changed.to_string(),
                ])
            }),
            [
                Constraint::Length(9),
                Constraint::Min(8),
                Constraint::Length(7),
                Constraint::Length(7),
            ],
        )
        .header(Row::new(["kind", "outcome", "fetched", "changed"]).style(bold))
        .block(Block::bordered().title(" sync runs ")),
        syncs,
    );

    frame.render_widget(
        Paragraph::new(format!(
            " q quit · p pause · refresh {}s",
            num(screen.refresh.as_secs_f64())
        ))
        .style(Style::new().add_modifier(Modifier::DIM)),
        footer,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn figures() -> FiguresView {
        serde_json::from_value(serde_json::json!({
            "at": 1_700_000_000_000i64, "instance": "box-42", "role": "serve", "uptime_secs": 3725,
            "now": {"intake_per_sec": 12.5, "confirmed_per_sec": 12.0, "intake_p50_ms": 1.2, "intake_p99_ms": 4.8,
                    "confirm_p50_ms": 20.0, "confirm_p99_ms": 61.0, "cache_hit_ratio": 0.987,
                    "batch_size_avg": 3.5, "lag_total": 7, "dead_letters": 2, "open_streams": 3},
            "partitions": [{"partition": 0, "lag": 4, "next_offset": 100, "end_offset": 104},
                           {"partition": 1, "lag": 3, "next_offset": 90, "end_offset": 93}],
            "queues": [{"queue": "default", "ready": 1, "scheduled": 2, "running": 0, "done": 10, "dead": 0},
                       {"queue": "mail", "ready": 0, "scheduled": 0, "running": 1, "done": 5, "dead": 4}],
            "sync_runs": [{"kind": "menu", "started_at": 1, "finished_at": 251, "fetched": 200, "changed": 3,
                           "errors": 0, "outcome": "ok"}],
            "series": {"t": [1, 2, 3], "intake_per_sec": [1.0, 5.0, 12.5], "confirmed_per_sec": [1.0, 4.0, 12.0],
                       "intake_p99_ms": [null, 3.0, 4.8], "confirm_p99_ms": [null, 50.0, 61.0],
                       "lag_total": [0, 3, 7], "batch_size_avg": [null, 2.0, 3.5],
                       "cache_hit_ratio": [null, 0.9, 0.987], "dead_letters": [2, 2, 2]},
            "a_figure_from_a_newer_server": true
        }))
        .expect("the contract's figures parse, with unknown fields")
    }

    fn render(screen: &Screen, now: Instant) -> String {
        let mut terminal = Terminal::new(TestBackend::new(160, 30)).unwrap();
        terminal.draw(|f| draw(f, screen, now)).unwrap();
        let buf = terminal.backend().buffer();
        let area = buf.area;
        let mut text = String::new();
        for y in 0..area.height {
            for x in 0..area.width {
                text.push_str(buf[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn the_header_shows_the_figures() {
        let t0 = Instant::now();
        let mut s = Screen::new("http://shop:8080".into(), Duration::from_secs(1));
        s.update(Ok(figures()), t0);
        let text = render(&s, t0);
        for want in [
            "rushhour monitor",
            "box-42 (serve)",
            "up 1h02m05s",
            "in 12.5/s",
            "out 12.0/s",
            "p99 4.8 ms",
            "confirm p99 61.0 ms",
            "lag 7",
            "jobs ready 1 running 1 dead 4",
            "cache 98.7%",
            "dead letters 2",
            "processors",
            "job queues",
            "mail",
            "sync runs",
            "menu",
            "q quit",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        assert!(!text.contains("STALE"), "{text}");
    }

    #[test]
    fn a_silent_server_shows_stale_with_the_age_then_recovers() {
        let t0 = Instant::now();
        let mut s = Screen::new("http://shop:8080".into(), Duration::from_secs(1));
        s.update(Ok(figures()), t0);
        s.update(Err("cannot connect".into()), t0 + Duration::from_secs(2));
        let text = render(&s, t0 + Duration::from_secs(7));
        assert!(
            text.contains("STALE  last good answer 7s ago  (cannot connect)"),
            "{text}"
        );
        assert!(text.contains("in 12.5/s"), "the last figures stay on screen:\n{text}");

        s.update(Ok(figures()), t0 + Duration::from_secs(8));
        let text = render(&s, t0 + Duration::from_secs(8));
        assert!(!text.contains("STALE"), "{text}");

        let mut fresh = Screen::new("http://shop:8080".into(), Duration::from_secs(1));
        fresh.update(Err("cannot connect".into()), fresh.started);
        let text = render(&fresh, fresh.started + Duration::from_secs(3));
        assert!(text.contains("STALE  no answer yet after 3s"), "{text}");
    }

    #[test]
    fn paused_is_shown() {
        let mut s = Screen::new("http://x".into(), Duration::from_millis(500));
        s.update(Ok(figures()), s.started);
        s.paused = true;
        let text = render(&s, s.started);
        assert!(text.contains("PAUSED") && text.contains("refresh 0.5s"), "{text}");
    }

    #[test]
    fn the_text_snapshot_lists_every_panel() {
        let text = snapshot_text("http://shop:8080", &figures());
        for want in [
            "instance box-42 (serve)",
            "in 12.5/s  out 12.0/s",
            "dead letters 2",
            "batch avg 3.5",
            "processors",
            "job queues",
            "mail",
            "sync runs",
            "fetched     200",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
    }
}
