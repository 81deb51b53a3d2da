"""The page: one HTML file with its CSS and a small script inline, and nothing to fetch.

The script does three things, all offline: it builds a chart's table from the chart's own
``data-*`` attributes when its button is pressed, downloads that table as CSV (a Blob, so
it works from a ``file://`` page), and shows a point's value on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from collector.report.charts import Chart, legend, svg, value_text
from collector.report.summary import LABELS, SOURCES, Figure, Quality

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1440px;padding:1rem;overflow-wrap:anywhere}
h1{font-size:1.5rem;margin:.2rem 0}
h2{font-size:1.2rem;margin:2rem 0 .6rem;padding-bottom:.2rem;border-bottom:1px solid var(--line)}
h3{font-size:.95rem;margin:0}
p{margin:.3rem 0}
.muted,.note{color:var(--muted);font-size:.8rem}
nav{display:flex;flex-wrap:wrap;gap:.2rem .9rem;font-size:.85rem;margin:.6rem 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,13rem),1fr));gap:.8rem}
.card{background:var(--card);border-radius:8px;padding:.7rem .9rem}
.card b{display:block;font-size:1.7rem;font-variant-numeric:tabular-nums}
.up{color:#1a7f37}.down{color:#cf222e}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,27rem),1fr));gap:1rem}
figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:.7rem;min-width:0;
display:flex;flex-direction:column}figcaption{flex:1}
svg{width:100%;height:auto;display:block;margin:.4rem 0}
svg text{font-size:12.5px;fill:var(--muted)}
.axis path{stroke:#e8ebee;stroke-width:1}
.step{fill:none}.p{opacity:.45}
.legend{list-style:none;padding:0;margin:.2rem 0;display:flex;flex-wrap:wrap;gap:.1rem .8rem;
font-size:.78rem}
.legend i{display:inline-block;width:.75rem;height:.75rem;background:var(--c);margin-right:.3rem;
border-radius:2px;vertical-align:-1px}
.legend i.step{height:.2rem;vertical-align:3px}
.tools{display:flex;gap:.5rem;margin-top:.3rem}
button{font:inherit;font-size:.78rem;padding:.15rem .6rem;border:1px solid var(--line);
border-radius:6px;background:var(--card);color:inherit;cursor:pointer}
.scroll{overflow-x:auto;max-width:100%}
.tbl{max-height:22rem;overflow:auto;margin-top:.4rem}
table{border-collapse:collapse;font-size:.78rem;font-variant-numeric:tabular-nums}
th,td{padding:.15rem .5rem;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
#quality-table td,#quality-table th{text-align:left;vertical-align:top}
th:first-child,td:first-child{text-align:left}
.empty{padding:1rem;background:var(--card);border-radius:8px}
#tip{position:fixed;pointer-events:none;background:#1f2328;color:#fff;font-size:.75rem;
padding:.15rem .4rem;border-radius:4px;display:none}
@media print{nav,.tools,#tip{display:none!important}body{max-width:none;padding:0;font-size:10pt}
.grid{grid-template-columns:1fr 1fr}figure,.card,tr{break-inside:avoid}h2{break-after:avoid}
.tbl{max-height:none}}
"""

JS = """
(()=>{const fmt=(v,d)=>v===''?'':Number(v).toLocaleString('en-US',{maximumFractionDigits:d});
function xs(svg){const s=svg.dataset;if(s.x)return s.x.split(',');const t=Date.parse(s.start);
return Array.from({length:+s.n},(_,i)=>new Date(t+i*864e5).toISOString().slice(0,10))}
function rows(svg){const xs_=xs(svg),
gs=[...svg.querySelectorAll('g[data-series]')],m=new Map(xs_.map(x=>[x,gs.map(()=>'')]));
gs.forEach((g,j)=>[...g.children].forEach((p,i)=>{const x=p.dataset.x||xs_[i];
if(!m.has(x))m.set(x,gs.map(()=>''));m.get(x)[j]=p.dataset.value}));
const body=[...m].map(([x,v])=>[x,...v]);
if(svg.dataset.xname==='day')body.sort((a,b)=>a[0]<b[0]?-1:a[0]>b[0]?1:0);
return[[svg.dataset.xname,...gs.map(g=>g.dataset.label)],...body]}
function table(svg){const t=rows(svg),d=+svg.dataset.decimals,e=document.createElement('table');
const h=e.createTHead().insertRow();t[0].forEach(c=>{const th=document.createElement('th');
th.textContent=c;h.append(th)});const b=e.createTBody();
t.slice(1).forEach(r=>{const tr=b.insertRow();r.forEach((c,i)=>{const td=tr.insertCell();
td.dataset.value=c;td.textContent=i?fmt(c,d):c})});
return e}
const q=c=>/[",\\n]/.test(c)?'"'+c.replace(/"/g,'""')+'"':c;
function save(name,text){const a=document.createElement('a');
a.href=URL.createObjectURL(new Blob([text],{type:'text/csv'}));a.download=name;
document.body.append(a);a.click();setTimeout(()=>{URL.revokeObjectURL(a.href);a.remove()},5e3)}
document.addEventListener('click',e=>{const b=e.target.closest('button');if(!b)return;
const f=b.closest('figure'),svg=f&&f.querySelector('svg');if(!svg)return;
if(b.dataset.csv!==undefined){
save(f.id+'.csv',rows(svg).map(r=>r.map(q).join(',')).join('\\n')+'\\n');return}
const box=f.querySelector('.tbl');if(!box.firstChild)box.append(table(svg));box.hidden=!box.hidden;
b.setAttribute('aria-expanded',String(!box.hidden));
b.textContent=box.hidden?'Show table':'Hide table'});
const tip=document.getElementById('tip');
document.addEventListener('mousemove',e=>{
const p=e.target.closest&&e.target.closest('svg [data-value]');
if(!p){tip.style.display='none';return}const svg=p.closest('svg'),g=p.parentNode,
x=p.dataset.x||xs(svg)[[...g.children].indexOf(p)];
tip.textContent=x+' \\u00b7 '+g.dataset.label+': '+fmt(p.dataset.value,+svg.dataset.decimals);
tip.style.display='block';tip.style.left=e.clientX+12+'px';tip.style.top=e.clientY+12+'px'})})();
"""


def count(value: float) -> str:
    """A number for people: 1,234 or 12.5 (`decimals` 1)."""
    return f"{value:,.0f}"


def number(value: float | None, decimals: int = 0) -> str:
    if value is None:
        return "\u2014"
    return f"{value:,.{decimals}f}"


def change(value: float | None) -> str:
    if value is None:
        return '<span class="muted">nothing to compare with</span>'
    css = "up" if value > 0 else "down" if value < 0 else "muted"
    sign = "+" if value > 0 else "\u2212" if value < 0 else "\u00b1"
    return f'<span class="{css}">{sign}{abs(value):,.1f} %</span>'


def cards(items: Sequence[Figure], current: str, previous: str) -> str:
    out = []
    for f in items:
        raw = "" if f.current is None else value_text(f.current)
        before = "" if f.previous is None else value_text(f.previous)
        note = f' <span class="muted">({escape(f.note)})</span>' if f.note else ""
        out.append(
            f'<div class="card" data-metric="{f.key}" data-value="{raw}"'
            f' data-previous="{before}"><span>{escape(f.label)}{note}</span>'
            f"<b>{number(f.current, f.decimals)}</b>{change(f.change)}"
            f'<p class="muted">{number(f.previous, f.decimals)} the 7 days before</p></div>')
    return (f'<p class="muted">{escape(current)}, against {escape(previous)} (UTC days)</p>'
            f'<div class="cards">{"".join(out)}</div>')


def figure(chart: Chart, ticks: Sequence[tuple[int, str]]) -> str:
    head = (f'<figure class="chart" id="{escape(chart.id)}"><figcaption>'
            f'<h3>{escape(chart.title)}</h3><p class="note">{escape(chart.note)}</p>'
            "</figcaption>")
    if not chart.points:
        return head + '<p class="empty">No data collected for this range.</p></figure>'
    return (head + svg(chart, ticks) + legend(chart)
            + '<div class="tools"><button type="button" data-table aria-expanded="false">'
            "Show table</button><button type=\"button\" data-csv>Download CSV</button></div>"
            '<div class="tbl scroll" hidden></div></figure>')


def quality_table(rows: Sequence[Quality], expected: int) -> str:
    """One row per org (and segment), one cell per source: days complete / partial /
    missing, and the failing windows; the newest failures listed below."""
    if not rows:
        return '<p class="empty">Nothing collected for these organizations yet.</p>'
    grid: dict[tuple[str, str], dict[str, Quality]] = {}
    for r in rows:
        grid.setdefault((r.org, r.segment), {})[r.source] = r
    head = "".join(f"<th>{escape(LABELS[s])}</th>" for s in SOURCES)
    body, failures = [], []
    for (org, segment), cells in grid.items():
        name = escape(org) + ("" if segment == "all" else f"<br>segment {escape(segment)}")
        tds = []
        for source in SOURCES:
            cell = cells.get(source)
            if cell is None:
                tds.append('<td class="muted">\u2014</td>')
                continue
            r, failing = cell, ""
            if r.failing:
                failing = f'<br><span class="down">{r.failing:,} failing</span>'
                failures += [f"<li>{escape(org)} {escape(LABELS[source])}"
                             f"{'' if segment == 'all' else ' (' + escape(segment) + ')'}: "
                             f"{escape(w[0])}: {escape(w[2])} ({w[3]} attempts)</li>"
                             for w in r.failing_windows]
            css = "down" if r.missing else "muted" if r.partial else "up"
            tds.append(
                f'<td data-source="{source}" data-complete="{r.complete}"'
                f' data-partial="{r.partial}" data-missing="{r.missing}"'
                f' data-failing="{"" if r.failing is None else r.failing}">'
                f'<span class="{css}">{count(r.complete)} / {count(r.partial)} / '
                f"{count(r.missing)}</span>{failing}</td>")
        body.append(f'<tr data-org="{escape(org)}" data-segment="{escape(segment)}">'
                    f'<td>{name}</td>{"".join(tds)}</tr>')
    failing_note = (" Failing windows: their last attempt failed; the collector retries "
                    "them (the newest are listed below the table)."
                    if any(r.failing is not None for r in rows) else "")
    listed = (f'<p>Newest failures:</p><ul class="note">{"".join(failures)}</ul>'
              if failures else "")
    return (f'<p class="muted">Per source: days <b>complete</b> / <b>partial</b> / '
            f"<b>missing</b> among the {expected} day(s) of the range up to today. Complete: "
            "every window fetched after it closed (active users and billing days: final); "
            "partial: collected, not final yet; missing: nothing stored."
            f"{failing_note}</p>"
            f'<div class="scroll"><table id="quality-table"><thead><tr><th>organization</th>'
            f'{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{listed}')


def document(*, title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{escape(k)}">{escape(t)}</a>' for k, t in nav)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><p class="muted">{escape(subtitle)}</p>'
        f"<nav>{links}</nav></header><main>{body}</main>"
        '<footer><p class="muted">Written by <code>collector report</code> from the '
        "database's public views. Days are UTC days. The page fetches nothing: styles, "
        'charts and script are all in this file.</p></footer><div id="tip"></div>'
        f"<script>{JS}</script></body></html>"
    )
