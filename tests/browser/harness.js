// window.harness: the in-page half of the JS SDK harness (runner.mjs calls it via page.evaluate).
//
// It owns one Twilio.Device of the official SDK, records every Device and Call event in
// order (so the Python test can wait for "registered", "incoming", "accept", "disconnect",
// ...), and measures media the way an application could: getStats() on the call's
// RTCPeerConnection and a WebAudio analyser on call.getRemoteStream().
// Loaded before twilio.min.js so the RTCPeerConnection wrapper sees every peer connection.
(() => {
  'use strict';

  const NativePC = window.RTCPeerConnection;
  const peerConnections = [];
  class TrackedPeerConnection extends NativePC {
    constructor(...args) {
      super(...args);
      peerConnections.push(this);
    }
  }
  window.RTCPeerConnection = TrackedPeerConnection;

  const events = [];
  const calls = [];
  let device = null;
  const waiters = new Set();

  const DEVICE_EVENTS = ['registering', 'registered', 'unregistered', 'error', 'destroyed',
    'tokenWillExpire'];
  const CALL_EVENTS = ['accept', 'disconnect', 'cancel', 'reject', 'error', 'ringing',
    'warning', 'warning-cleared', 'reconnecting', 'reconnected', 'mute'];

  function describe(value) {
    if (value === undefined || value === null) return null;
    if (typeof value !== 'object') return value;
    if (value instanceof Error || 'code' in value) {
      return { name: value.name, code: value.code, message: value.message };
    }
    if (calls.includes(value)) return { call: calls.indexOf(value) };
    try {
      return JSON.parse(JSON.stringify(value));
    } catch (err) {
      return String(value);
    }
  }

  function record(source, call, name, args) {
    events.push({ seq: events.length, source, call, name, args: args.map(describe) });
    for (const waiter of [...waiters]) waiter();
  }

  function track(call) {
    let index = calls.indexOf(call);
    if (index >= 0) return index;
    index = calls.push(call) - 1;
    for (const name of CALL_EVENTS) {
      call.on(name, (...args) => record('call', index, name, args));
    }
    return index;
  }

  function callAt(index) {
    const call = calls[index];
    if (!call) throw new Error(`no call #${index} (have ${calls.length})`);
    return call;
  }

  function peerConnectionOf(call) {
    // The SDK's own path to its RTCPeerConnection (used by its stats code); else the newest.
    const internal = call._mediaHandler && call._mediaHandler.version
      && call._mediaHandler.version.pc;
    return internal || peerConnections[peerConnections.length - 1] || null;
  }

  function matches(event, want) {
    return event.name === want.name
      && (want.source === undefined || event.source === want.source)
      && (want.call === undefined || event.call === want.call);
  }

  window.harness = {
    /** Create the Device: `options` are Twilio.Device options (chunderw, sounds, ...). */
    setup(token, options) {
      device = new window.Twilio.Device(token, options);
      for (const name of DEVICE_EVENTS) {
        device.on(name, (...args) => record('device', null, name, args));
      }
      device.on('incoming', (call) => {
        const index = track(call);
        record('device', null, 'incoming', [{
          call: index, parameters: call.parameters,
          customParameters: Object.fromEntries(call.customParameters || []),
        }]);
      });
      return { version: window.Twilio.Device.version, state: device.state };
    },

    async register() {
      await device.register();
      return device.state;
    },

    async unregister() {
      await device.unregister();
      return device.state;
    },

    /** device.connect({params, ...extra}) (e.g. extra.rtcConfiguration); returns the call's index. */
    async connect(params, extra) {
      const call = await device.connect({ params, ...(extra || {}) });
      return track(call);
    },

    accept(index) { callAt(index).accept(); return callAt(index).status(); },
    reject(index) { callAt(index).reject(); return callAt(index).status(); },
    disconnect(index) { callAt(index).disconnect(); return callAt(index).status(); },
    sendDigits(index, digits) { callAt(index).sendDigits(digits); return true; },

    call(index) {
      const call = callAt(index);
      return {
        status: call.status(), direction: call.direction, parameters: call.parameters,
        codec: call.codec, isMuted: call.isMuted(),
      };
    },

    deviceState() {
      return { state: device && device.state, isBusy: device && device.isBusy };
    },

    updateToken(token) { device.updateToken(token); return true; },

    events() { return events; },

    /** Resolve with the `count`-th event matching {name, source?, call?}, or fail on timeout. */
    waitEvent(want, count, timeoutMs) {
      const n = count || 1;
      return new Promise((resolve, reject) => {
        let timer = null;
        const check = () => {
          const found = events.filter((e) => matches(e, want));
          if (found.length < n) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found[n - 1]);
          return true;
        };
        if (check()) return;
        waiters.add(check);
        timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${JSON.stringify(want)} x${n}; events: `
            + JSON.stringify(events.map((e) => [e.source, e.call, e.name]))));
        }, timeoutMs);
      });
    },

    /** getStats() of the call's peer connection: inbound/outbound RTP, codec, selected pair. */
    async stats(index) {
      const pc = peerConnectionOf(callAt(index));
      if (!pc) return null;
      const report = await pc.getStats();
      const out = {
        connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState,
        inbound: null, outbound: null, pair: null, codecs: [],
        canInsertDTMF: pc.getSenders().some((sender) => sender.dtmf && sender.dtmf.canInsertDTMF),
      };
      const byId = new Map();
      report.forEach((s) => byId.set(s.id, s));
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          out.inbound = {
            packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived,
            audioLevel: s.audioLevel, totalAudioEnergy: s.totalAudioEnergy,
            totalSamplesReceived: s.totalSamplesReceived, codecId: s.codecId,
          };
        } else if (s.type === 'outbound-rtp' && s.kind === 'audio') {
          out.outbound = { packetsSent: s.packetsSent, bytesSent: s.bytesSent, codecId: s.codecId };
        } else if (s.type === 'codec') {
          out.codecs.push({ id: s.id, mimeType: s.mimeType, payloadType: s.payloadType });
        } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
          const local = byId.get(s.localCandidateId) || {};
          const remote = byId.get(s.remoteCandidateId) || {};
          out.pair = {
            local: `${local.address}:${local.port}`, localType: local.candidateType,
            remote: `${remote.address}:${remote.port}`, remoteType: remote.candidateType,
          };
        }
      });
      return out;
    },

    /** Loudest frequency (Hz) and level (dBFS) of call.getRemoteStream(), via WebAudio. */
    async remoteSpectrum(index, settleMs) {
      const stream = callAt(index).getRemoteStream();
      if (!stream) return null;
      const context = new AudioContext();
      try {
        await context.resume();
        const source = context.createMediaStreamSource(stream);
        const analyser = context.createAnalyser();
        analyser.fftSize = 8192;
        analyser.smoothingTimeConstant = 0.5;
        source.connect(analyser);
        await new Promise((resolve) => setTimeout(resolve, settleMs));
        const bins = new Float32Array(analyser.frequencyBinCount);
        analyser.getFloatFrequencyData(bins);
        let peak = 0;
        for (let i = 1; i < bins.length; i += 1) if (bins[i] > bins[peak]) peak = i;
        return {
          peakHz: (peak * context.sampleRate) / analyser.fftSize,
          peakDb: bins[peak],
          sampleRate: context.sampleRate,
        };
      } finally {
        await context.close();
      }
    },

    destroy() {
      if (device) device.destroy();
      return true;
    },
  };
})();
