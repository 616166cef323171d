"""The dashboard's page: one HTML document with its style and script inline, no other asset.

The script opens ``events`` (an ``EventSource`` next to the page: ``/dashboard/events``) and
redraws the sections from each ``state`` event's JSON; it builds every cell with
``textContent``, never markup from the data. A strict Content-Security-Policy allows nothing
but the inline script and style and connections to the page's own origin.
"""

from __future__ import annotations

PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "content-security-policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2rem auto;max-width:80rem;padding:0 1rem;
color:#1d2329}h1{font-size:1.3rem;margin:0}h2{font-size:1.05rem;margin:1.2rem 0 .3rem}
#meta{color:#5b6570}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #dde2e6}
th{background:#f4f6f8;font-weight:600}.ok{color:#1a7f37}.bad{color:#cf222e}
.warn{color:#9a6700}#live.off{color:#cf222e}code{font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(36rem,1fr));gap:0 1.5rem}
"""

_SCRIPT = r"""
const $=id=>document.getElementById(id);let updates=0;
function cell(tr,text,cls){const td=document.createElement('td');td.textContent=
text==null?'':String(text);if(cls)td.className=cls;tr.appendChild(td);return td}
function table(id,rows,empty){const tb=$(id);tb.textContent='';if(!rows.length){
const tr=tb.insertRow();const td=cell(tr,empty);td.colSpan=9;return}
for(const [key,cells] of rows){const tr=tb.insertRow();if(key)tr.id=key;
for(const c of cells)Array.isArray(c)?cell(tr,c[0],c[1]):cell(tr,c)}}
function nodes(s){const now=Date.now()/1000;let rs=(s.records||[]).map(r=>{
const exp=r.expiresAt||0;const up=typeof exp==='number'?exp>now:true;
return{host:r.host||(r.addresses||[])[0]||'',name:r.name,version:r.version,
roles:(r.roles||[]).join(','),ready:up}});
if(!rs.length)rs=(s.members||{}).members?.map(m=>({host:m.address,name:m.name||
(m.identity||'').slice(0,12),version:'',roles:(m.roles||[]).join(','),ready:null}))||[];
for(const n of s.controller_nodes||[]){const f=rs.find(r=>r.name===n.name);
if(f){f.ready=n.ready;f.version=f.version||n.version;f.host=f.host||n.host}
else rs.push(n)}
rs.sort((a,b)=>(a.host+a.name).localeCompare(b.host+b.name));
table('nodes',rs.map(r=>['node-'+r.name,[r.host,r.name,[r.ready==null?'?':r.ready?
'Ready':'not ready',r.ready?'ok':'bad'],r.version,r.roles]]),'no node known yet')}
function draw(s){updates++;document.body.dataset.updates=updates;const me=s.node||{};
$('title').textContent='HyperMesh '+(me.network||'')+' \u2014 seen from '+(me.name||'?');
const rd=me.readiness||{};$('meta').textContent='version '+(me.version||'?')+
' \u00b7 '+(rd.ready===false?'not ready: '+(rd.reason||''):'ready')+' \u00b7 updated '+
new Date((s.at||0)*1000).toLocaleTimeString();nodes(s);
const ps=s.network_paths||((s.paths||{}).peers||[]).map(p=>({...p,from:me.name}));
table('paths',ps.map(p=>['path-'+p.from+'-'+(p.name||p.node),[p.from+' \u2192 '+(p.name||
(p.node||'').slice(0,12)),[p.path,p.path==='direct'?'ok':'warn'],p.rtt_ms==null?'':
p.rtt_ms+' ms',p.remote]]),'no peer path');
const m=me.mirror;table('mirror',m?Object.entries(m.zones||{}).map(([z,v])=>{
const lag=v.registrySerial==null?'':v.registrySerial-v.serial;return['zone-'+z,[z,
v.serial,v.registrySerial,[lag,lag?'warn':'ok'],v.stale?'stale':'']]}):Object.entries(
me.zones||{}).map(([z,v])=>['zone-'+z,[z,v,v,0,'served']]),'no zone');
const cs=[];if(s.chain)cs.push(['chain-own',[(s.chain.author||'').slice(0,12)+' (own)',
s.chain.size,(s.chain.root||'').slice(0,16),((s.checkpoint||{}).cosignatures||[]).map(
c=>(c.witness||'').slice(0,12)).join(', ')]]);for(const c of (s.replicas||{}).chains||[])
cs.push(['chain-'+c.author,[(c.author||'').slice(0,12),c.size,(c.root||'').slice(0,16),
c.forkedAt==null?'':'forked at '+c.forkedAt]]);table('chains',cs,'no chain');
table('policy',(s.policies||[]).map(p=>['policy-'+p.name,[p.name,[p.status,
p.status==='True'?'ok':'bad'],p.reason,p.message]]),s.policies?'no policy':
'shown by hmctl dashboard');
table('tlds',((s.tlds||{}).items||[]).map(t=>['tld-'+t.name,[t.name,[t.status,
t.status==='active'?'ok':t.status==='pending'?'warn':'bad'],(t.owner||'').slice(0,12),
t.serial,t.expiresAt]]),s.tlds?'no TLD':'not a registry node');
const ev=[...(s.events||[]),...(s.controller_events||[])].map(e=>[String(e.at).includes(
'T')?new Date(e.at):new Date(e.at*1000),e.text]).sort((a,b)=>b[0]-a[0]).slice(0,50);
table('events',ev.map(e=>[null,[e[0].toLocaleTimeString(),e[1]]]),'nothing yet')}
function connect(){const es=new EventSource('events');es.addEventListener('state',
e=>{$('live').className='';$('live').textContent='live';draw(JSON.parse(e.data))});
es.onerror=()=>{$('live').className='off';$('live').textContent='reconnecting'}}
connect();
"""


def _section(title: str, key: str, heads: tuple[str, ...]) -> str:
    head = "".join(f"<th>{h}</th>" for h in heads)
    return f'<section><h2>{title}</h2><table><thead><tr>{head}</tr></thead><tbody id="{key}">'


def render_page() -> str:
    """The page as text (the same for every viewer: the data arrives by its events)."""
    sections = "</tbody></table></section>".join(
        _section(*s)
        for s in (
            ("Nodes", "nodes", ("Host", "Node", "Ready", "Version", "Roles")),
            ("Paths to peers", "paths", ("Peer", "Path", "RTT", "Remote")),
            ("Mirror", "mirror", ("Zone", "Serial", "Registry serial", "Lag", "")),
            ("Chains", "chains", ("Author", "Size", "Root", "Witnesses")),
            ("Policy probe", "policy", ("Policy", "Enforced", "Reason", "Finding")),
            ("Registry TLDs", "tlds", ("TLD", "Status", "Owner", "Serial", "Expires")),
            ("Recent events", "events", ("When", "What")),
        )
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>HyperMesh dashboard</title><style>{_STYLE}</style></head><body>"
        '<h1 id="title">HyperMesh</h1><p><span id="live" class="off">connecting</span> '
        f'&middot; <span id="meta"></span></p><div class="grid">{sections}'
        f"</tbody></table></section></div><script>{_SCRIPT}</script></body></html>\n"
    )
