//! `myelinctl boot`: PID 1's boot timeline as text (like `systemd-analyze blame` and
//! `critical-chain` together) or as an SVG chart.

use std::fmt::Write as _;

use myelin_api::init::BootTimeline;

/// Seconds with milliseconds, for a monotonic time in ms.
fn secs(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// The timeline as text: the kernel's share, PID 1's phases, each service from start to ready,
/// the total, and the services ranked by how long they took to be ready.
pub fn render_text(t: &BootTimeline) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "kernel until PID 1             {}",
        secs(t.init_start_ms)
    );
    for p in &t.phases {
        let _ = writeln!(
            s,
            "  {:<28} {:>9}  {:>6} ms",
            p.name,
            format!("+{}", secs(p.start_ms.saturating_sub(t.init_start_ms))),
            p.end_ms.saturating_sub(p.start_ms)
        );
    }
    for sv in &t.services {
        let start = format!("+{}", secs(sv.started_ms.saturating_sub(t.init_start_ms)));
        let ready = match sv.ready_ms {
            Some(r) => format!("{:>6} ms to ready", r.saturating_sub(sv.started_ms)),
            None => "never ready".to_string(),
        };
        let _ = writeln!(s, "  {:<28} {:>9}  {ready}", sv.name, start);
    }
    match t.all_ready_ms {
        Some(all) => {
            let _ = writeln!(
                s,
                "all services ready            {} (userspace {})",
                secs(all),
                secs(all.saturating_sub(t.init_start_ms))
            );
        }
        None => s.push_str("not every service has been ready yet\n"),
    }
    let mut blame: Vec<_> = t
        .services
        .iter()
        .filter_map(|sv| Some((sv.ready_ms?.saturating_sub(sv.started_ms), &sv.name)))
        .collect();
    blame.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    if !blame.is_empty() {
        s.push_str("slowest to ready:\n");
        for (ms, name) in blame {
            let _ = writeln!(s, "  {ms:>6} ms {name}");
        }
    }
    s
}

/// The timeline as an SVG chart: one bar per phase and per service (start to ready), on a
/// time axis from 0 (kernel start) to the last event.
pub fn render_svg(t: &BootTimeline) -> String {
    let end = t
        .all_ready_ms
        .into_iter()
        .chain(t.phases.iter().map(|p| p.end_ms))
        .chain(
            t.services
                .iter()
                .map(|s| s.ready_ms.unwrap_or(s.started_ms)),
        )
        .max()
        .unwrap_or(t.init_start_ms)
        .max(1);
    let (width, row, label) = (1000.0_f64, 22_u64, 220.0_f64);
    let x = |ms: u64| label + (ms as f64 / end as f64) * (width - label - 20.0);
    let mut rows: Vec<(String, u64, u64, &str)> =
        vec![("kernel".into(), 0, t.init_start_ms, "#999")];
    rows.extend(
        t.phases
            .iter()
            .map(|p| (p.name.clone(), p.start_ms, p.end_ms, "#4a90d9")),
    );
    rows.extend(t.services.iter().map(|s| {
        let (stop, colour) = match s.ready_ms {
            Some(r) => (r, "#5cb85c"),
            None => (end, "#d9534f"),
        };
        (s.name.clone(), s.started_ms, stop, colour)
    }));
    let height = row * (rows.len() as u64 + 2);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n"
    );
    for (i, (name, a, b, colour)) in rows.iter().enumerate() {
        let y = row * (i as u64 + 1);
        let w = (x(*b) - x(*a)).max(1.0);
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{}\">{}</text><rect x=\"{:.1}\" y=\"{}\" width=\"{w:.1}\" \
             height=\"{}\" fill=\"{colour}\"><title>{} {} ms</title></rect>",
            y + 14,
            escape(name),
            x(*a),
            y + 3,
            row - 6,
            escape(name),
            b.saturating_sub(*a)
        );
    }
    if let Some(all) = t.all_ready_ms {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{height}\" stroke=\"black\"/>\
             <text x=\"{0:.1}\" y=\"{1}\">all ready {2}</text>",
            x(all),
            height - 4,
            secs(all)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_api::init::{BootPhase, ServiceBoot};

    fn timeline() -> BootTimeline {
        BootTimeline {
            init_start_ms: 1500,
            phases: vec![BootPhase {
                name: "data partition".into(),
                start_ms: 1510,
                end_ms: 1900,
            }],
            services: vec![
                ServiceBoot {
                    name: "kv".into(),
                    started_ms: 2000,
                    ready_ms: Some(2100),
                },
                ServiceBoot {
                    name: "update".into(),
                    started_ms: 2001,
                    ready_ms: Some(2801),
                },
                ServiceBoot {
                    name: "<app>".into(),
                    started_ms: 2002,
                    ready_ms: None,
                },
            ],
            all_ready_ms: None,
        }
    }

    #[test]
    fn text_ranks_services_and_names_the_kernel_share() {
        let text = render_text(&timeline());
        assert!(
            text.starts_with("kernel until PID 1             1.500s\n"),
            "{text}"
        );
        assert!(text.contains("data partition"), "{text}");
        assert!(text.contains("   390 ms"), "{text}");
        assert!(text.contains("never ready"), "{text}");
        assert!(
            text.contains("not every service has been ready yet"),
            "{text}"
        );
        let blame = text.split("slowest to ready:\n").nth(1).unwrap_or_default();
        assert_eq!(blame, "     800 ms update\n     100 ms kv\n");
        let mut t = timeline();
        t.all_ready_ms = Some(2900);
        assert!(
            render_text(&t).contains("all services ready            2.900s (userspace 1.400s)")
        );
    }

    #[test]
    fn svg_has_a_bar_per_row_and_escapes_names() {
        let svg = render_svg(&timeline());
        assert_eq!(svg.matches("<rect").count(), 5, "{svg}");
        assert!(
            svg.contains("&lt;app&gt;") && !svg.contains("<app>"),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>\n"));
    }
}
