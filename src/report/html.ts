// The HTML side of the run report: escaping, a few element helpers and the page shell with its stylesheet.
// Everything the page shows is inlined (CSS here, charts as SVG, images as data URIs), so the one file opens
// offline, from any folder, and can be mailed or archived as is.

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for element content and quoted attribute values (in HTML and inline SVG alike). */
export function escapeHtml(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** A table; cells are HTML (escape text before passing it). `numeric` right-aligns those column indices. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], opts: { numeric?: readonly number[]; className?: string } = {}): string {
  const num = new Set(opts.numeric ?? []);
  const cell = (tag: 'th' | 'td', html: string, i: number) => `<${tag}${num.has(i) ? ' class="num"' : ''}>${html}</${tag}>`;
  return `<table${opts.className ? ` class="${escapeHtml(opts.className)}"` : ''}>` +
    `<thead><tr>${headers.map((h, i) => cell('th', escapeHtml(h), i)).join('')}</tr></thead>` +
    `<tbody>${rows.map((r) => `<tr>${r.map((c, i) => cell('td', c, i)).join('')}</tr>`).join('')}</tbody></table>`;
}

/** A titled section with an anchor for the table of contents. */
export function section(id: string, title: string, body: string): string {
  return `<section id="${escapeHtml(id)}"><h2>${escapeHtml(title)}</h2>${body}</section>`;
}

/** A collapsible block (closed by default). */
export function details(summary: string, body: string, open = false): string {
  return `<details${open ? ' open' : ''}><summary>${escapeHtml(summary)}</summary>${body}</details>`;
}

export function paragraph(text: string, className?: string): string {
  return `<p${className ? ` class="${escapeHtml(className)}"` : ''}>${escapeHtml(text)}</p>`;
}

/** Pretty-printed JSON, escaped into a <pre>. */
export function jsonBlock(value: unknown): string {
  return `<pre class="json">${escapeHtml(JSON.stringify(value, null, 2))}</pre>`;
}

const STYLE = `
:root { --fg: #1d2330; --muted: #667085; --line: #e3e6ec; --bg: #f6f7f9; --card: #fff; --accent: #2f6fdf;
  --good: #18794e; --bad: #c4320a; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { background: #1d2330; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header .sub { color: #b8c0d0; font-size: 13px; word-break: break-all; }
header .headline { margin-top: 8px; font-size: 13px; color: #dfe4ee; }
nav { padding: 8px 32px; background: #fff; border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 1; }
nav a { color: var(--accent); text-decoration: none; margin-right: 16px; font-size: 13px; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 32px 48px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
h2 { font-size: 17px; margin: 0 0 12px; font-weight: 600; }
h3 { font-size: 14px; margin: 16px 0 8px; font-weight: 600; }
p { margin: 6px 0; }
.muted { color: var(--muted); font-size: 13px; }
.warn { color: var(--bad); }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: var(--good); } .down { color: var(--bad); }
.stages { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0 8px; }
.chip { padding: 3px 10px; border-radius: 12px; font-size: 12px; border: 1px solid var(--line); }
.chip.done { background: #e6f4ea; border-color: #b7dfc4; color: var(--good); }
.chip.missing { background: #f4f4f5; color: var(--muted); text-decoration: line-through; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
svg.chart { background: #fff; font-size: 11px; }
svg.chart text { fill: #444c5c; }
svg.chart .grid { stroke: #eceef2; }
svg.chart .axis { stroke: #9aa3b2; }
svg.chart .title { font-size: 13px; font-weight: 600; fill: var(--fg); }
.gallery { border-collapse: separate; border-spacing: 4px; }
.gallery.wide { table-layout: fixed; width: 100%; }
.gallery.wide col.idcol { width: 22px; }
.gallery td, .gallery th { border: none; padding: 0; text-align: center; font-size: 12px; }
.gallery th { background: none; color: var(--muted); font-weight: 600; padding-bottom: 2px; }
.gallery img { display: block; margin: 0 auto; max-width: min(240px, 100%); height: auto; border-radius: 3px; }
.gallery .id { writing-mode: vertical-rl; transform: rotate(180deg); color: var(--muted); font-size: 11px; white-space: nowrap; }
.gallery .cap { color: var(--muted); font-size: 11px; max-width: 240px; margin-top: 2px; }
.gallery .missing { width: 120px; height: 90px; display: flex; align-items: center; justify-content: center;
  background: #f4f4f5; color: var(--muted); border-radius: 3px; font-size: 11px; padding: 4px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 8px 0; font-size: 12px; }
.legend span.sw { display: inline-block; width: 14px; height: 14px; border-radius: 2px; vertical-align: -3px; margin-right: 5px; border: 1px solid #0002; }
details summary { cursor: pointer; color: var(--accent); margin: 4px 0; }
pre.json { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 12px; font-size: 12px; overflow: auto; max-height: 600px; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 16px; }
`;

export interface PageOptions {
  title: string;
  /** Header lines under the title (plain text). */
  subtitle: string;
  headline?: string;
  /** [anchor id, label] pairs for the navigation bar. */
  nav: readonly (readonly [string, string])[];
  /** The sections' HTML. */
  body: string;
  footer?: string;
}

/** The complete document: no scripts, no external stylesheets, fonts or images. */
export function page(o: PageOptions): string {
  return '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${escapeHtml(o.title)}</title><style>${STYLE}</style></head><body>` +
    `<header><h1>${escapeHtml(o.title)}</h1><div class="sub">${escapeHtml(o.subtitle)}</div>` +
    (o.headline ? `<div class="headline">${escapeHtml(o.headline)}</div>` : '') + '</header>' +
    `<nav>${o.nav.map(([id, label]) => `<a href="#${escapeHtml(id)}">${escapeHtml(label)}</a>`).join('')}</nav>` +
    `<main>${o.body}</main>` +
    (o.footer ? `<footer>${escapeHtml(o.footer)}</footer>` : '') +
    '</body></html>\n';
}
