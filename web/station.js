// zeroqc line page, the station screen (serve --station): the last frame, the last verdict large,
// the counters, the camera's and the PLC's state, and the trigger-to-result times. Shown only when
// the server runs a station; polled once a second while it is on screen (1 request, 2 with a new
// frame: well inside the key's rate limit).
'use strict';

const stationView = { timer: null, lastPart: null, frameUrl: null };

function stationCounter(id, value) { $(id).textContent = String(value); }

function deviceText(d) {
  if (!d) return '';
  const since = d.since ? ' since ' + new Date(d.since).toLocaleTimeString() : '';
  return d.state + since + (d.error ? ': ' + d.error : '');
}

function drawStation(s) {
  $('station-name').textContent = s.name + ' · ' + s.product + ' · trigger ' + s.trigger;
  const camera = $('station-camera'), plc = $('station-plc');
  camera.textContent = 'camera ' + s.camera.id + ': ' + deviceText(s.camera);
  camera.dataset.state = s.camera.state;
  plc.textContent = s.plc.address ? 'PLC ' + s.plc.address + ': ' + deviceText(s.plc) : 'no PLC';
  plc.dataset.state = s.plc.state;
  const c = s.counters;
  stationCounter('station-parts', c.parts);
  stationCounter('station-nok', c.nok);
  stationCounter('station-errors', c.errors);
  stationCounter('station-overruns', c.overruns);
  $('station-more').textContent = c.incomplete_frames + ' incomplete frame(s), ' + c.undelivered + ' result(s) the PLC could not take, ' +
    s.waiting + ' of ' + s.queue + ' waiting';
  const tile = $('station-tile');
  if (!s.last) {
    tile.className = 'tile EMPTY';
    tile.dataset.state = 'empty';
    $('station-verdict').textContent = '–';
    $('station-text').textContent = 'no part yet';
  } else {
    const v = s.last.verdict;
    tile.className = 'tile ' + (v === 'error' ? 'ERROR' : v);
    tile.dataset.state = v === 'error' ? 'error' : v.toLowerCase();
    $('station-verdict').textContent = v === 'error' ? 'ERROR' : v;
    $('station-text').textContent = (s.last.part_id ? 'part ' + s.last.part_id : 'part #' + s.last.part) + ' · ' +
      (v === 'error' ? s.last.error : 'score ' + s.last.score.toFixed(3)) + ' · PLC ' + s.last.plc;
  }
  const rows = [];
  for (const stage of ['acquire', 'convert', 'queue', 'engine', 'plc', 'total']) {
    const q = s.latency_ms[stage];
    if (q) rows.push(el('tr', {}, el('td', {}, stage), el('td', {}, q.p50.toFixed(1)), el('td', {}, q.p99.toFixed(1))));
  }
  $('station-latency').replaceChildren(...rows);
}

async function refreshStation() {
  try {
    const s = await api('/v1/station');
    drawStation(s);
    if (s.last && s.last.part !== stationView.lastPart) {  // a new part: its frame
      stationView.lastPart = s.last.part;
      const url = await authedImage('/v1/station/frame').catch(() => null);
      if (url) {
        if (stationView.frameUrl) URL.revokeObjectURL(stationView.frameUrl);
        stationView.frameUrl = url;
        $('station-frame').src = url;
      }
    }
  } catch (e) {
    setStatus(e.message, true);
  }
}

function stationShown(on) {
  clearInterval(stationView.timer);
  stationView.timer = null;
  if (!on) return;
  refreshStation();
  stationView.timer = setInterval(refreshStation, 1000);
}

// Whether this server runs a station: its tab is shown when it does.
async function loadStation() {
  const res = await authedFetch('/v1/station');
  $('tab-station').hidden = res.status !== 200;
  if (res.status !== 200 && document.body.dataset.screen === 'station') showScreen('line');
}
