// MQTT 5 enhanced authentication (SCRAM-SHA-256, RFC 5802 / RFC 7677) with
// MQTT.js (the npm package `mqtt`, pinned in package.json), driven by
// crates/testkit/tests/interop_mqttjs_scram.rs.
//
// Usage: node scram.js HOST PORT SCENARIO USER PASSWORD
//
//   login: SCRAM login; checks the server's proof (server-final-message in
//          the CONNACK's Authentication Data), subscribes to chat/scram and
//          Secret/# (the user's role allows the first only), publishes to
//          chat/scram and waits for the message to come back.
//   wrong: SCRAM login with PASSWORD (meant to be wrong); reports the
//          CONNACK refusal.
//
// Prints one line, `RESULT {...}` (JSON), of what MQTT.js saw; exit status
// 0 when the scenario ran to its end, 2 when it gave up (every wait is
// bounded: DEADLINE_MS in all).
//
// How MQTT.js does enhanced authentication (lib/client.ts, lib/handlers/
// auth.ts of mqtt 5.x): `properties.authenticationMethod` and
// `properties.authenticationData` go in CONNECT; each AUTH packet the
// broker sends (reason 0x18 Continue authentication, same method) is
// handed to `client.handleAuth(packet, callback)`, and the packet passed
// to `callback(null, packet)` is sent back before the CONNACK. The
// `authPacket` option is something else: an AUTH packet MQTT.js sends
// unprompted right after CONNECT, which SCRAM has no use for (its
// client-first-message belongs in CONNECT's Authentication Data).

'use strict'

const crypto = require('node:crypto')
const mqtt = require('mqtt')

const DEADLINE_MS = 15000
const METHOD = 'SCRAM-SHA-256'
const CONTINUE = 0x18

const [host, port, scenario, user, password] = process.argv.slice(2)
const result = { scenario }

function finish (status) {
  process.stdout.write('RESULT ' + JSON.stringify(result) + '\n', () => process.exit(status))
}

const deadline = setTimeout(() => {
  result.error = `gave up after ${DEADLINE_MS} ms`
  finish(2)
}, DEADLINE_MS)

// ---- SCRAM-SHA-256 client (RFC 5802 section 3) ----

const hmac = (key, text) => crypto.createHmac('sha256', key).update(text).digest()
const sha256 = (data) => crypto.createHash('sha256').update(data).digest()
const xor = (a, b) => Buffer.from(a.map((x, i) => x ^ b[i]))

// saslname: ',' and '=' escaped (RFC 5802 section 5.1).
const saslname = user.replace(/=/g, '=3D').replace(/,/g, '=2C')
const clientNonce = crypto.randomBytes(18).toString('base64')
const gs2Header = 'n,,'
const clientFirstBare = `n=${saslname},r=${clientNonce}`
let expectedServerFinal = null

function parseAttributes (text) {
  const attrs = {}
  for (const part of text.split(',')) {
    const eq = part.indexOf('=')
    attrs[part.slice(0, eq)] = part.slice(eq + 1)
  }
  return attrs
}

/** The client-final-message answering `serverFirst`. */
function clientFinal (serverFirst) {
  const attrs = parseAttributes(serverFirst)
  if (!attrs.r || !attrs.r.startsWith(clientNonce) || attrs.r.length <= clientNonce.length) {
    throw new Error(`server nonce does not extend ours: ${serverFirst}`)
  }
  const salt = Buffer.from(attrs.s, 'base64')
  const iterations = Number(attrs.i)
  result.server_first = { salt_bytes: salt.length, iterations }
  const salted = crypto.pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256')
  const clientKey = hmac(salted, 'Client Key')
  const storedKey = sha256(clientKey)
  const withoutProof = `c=${Buffer.from(gs2Header).toString('base64')},r=${attrs.r}`
  const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`
  const proof = xor(clientKey, hmac(storedKey, authMessage))
  const serverKey = hmac(salted, 'Server Key')
  expectedServerFinal = 'v=' + hmac(serverKey, authMessage).toString('base64')
  return `${withoutProof},p=${proof.toString('base64')}`
}

// ---- the MQTT.js client ----

const client = mqtt.connect({
  host,
  port: Number(port),
  protocol: 'mqtt',
  protocolVersion: 5,
  clientId: `mqttjs-scram-${scenario}`,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 10000,
  manualConnect: true,
  properties: {
    authenticationMethod: METHOD,
    authenticationData: Buffer.from(gs2Header + clientFirstBare)
  }
})

// Every packet MQTT.js received, in brief (for the test's messages).
result.received = []
client.on('packetreceive', (packet) => {
  const brief = { cmd: packet.cmd }
  for (const key of ['reasonCode', 'granted', 'topic', 'messageId']) {
    if (packet[key] !== undefined) brief[key] = packet[key]
  }
  if (packet.properties?.reasonString) brief.reasonString = packet.properties.reasonString
  result.received.push(brief)
})

result.auth_packets = []
client.handleAuth = (packet, callback) => {
  const data = packet.properties?.authenticationData
  result.auth_packets.push({
    reason: packet.reasonCode,
    method: packet.properties?.authenticationMethod ?? null
  })
  if (packet.reasonCode !== CONTINUE || !data) {
    callback(new Error(`unexpected AUTH: ${JSON.stringify(packet)}`))
    return
  }
  let final
  try {
    final = clientFinal(data.toString('utf8'))
  } catch (err) {
    callback(err)
    return
  }
  callback(null, {
    cmd: 'auth',
    reasonCode: CONTINUE,
    properties: { authenticationMethod: METHOD, authenticationData: Buffer.from(final) }
  })
}

client.on('error', (err) => {
  result.error_event = { message: err.message, code: err.code ?? null }
  if (scenario === 'wrong') {
    clearTimeout(deadline)
    client.end(true, () => finish(0))
    return
  }
  result.error = `client error: ${err.message}`
  clearTimeout(deadline)
  client.end(true, () => finish(2))
})

client.on('connect', (connack) => {
  const props = connack.properties ?? {}
  const serverFinal = props.authenticationData ? props.authenticationData.toString('utf8') : null
  result.connack = {
    reason: connack.reasonCode ?? 0,
    method: props.authenticationMethod ?? null,
    server_final: serverFinal,
    server_proof_ok: serverFinal !== null && serverFinal === expectedServerFinal
  }
  if (scenario !== 'login') {
    result.error = `${scenario}: connected although it should not have`
    clearTimeout(deadline)
    client.end(true, () => finish(2))
    return
  }
  roundTrip()
})

client.on('message', (topic, payload, packet) => {
  result.message = { topic, payload: payload.toString('utf8'), qos: packet.qos }
  doneWhenBoth()
})

// The round trip is over when the PUBACK and the message are both in.
function doneWhenBoth () {
  if (result.message && result.puback) {
    clearTimeout(deadline)
    client.end(false, () => finish(0))
  }
}

function roundTrip () {
  // MQTT.js reports a SUBACK failure code as an error without a code;
  // the SUBACK itself is the callback's third argument.
  client.subscribe('Secret/#', { qos: 1 }, (err, _subs, suback) => {
    result.refused_subscription = {
      error: err ? err.message : null,
      codes: suback?.granted ?? null,
      reason_string: suback?.properties?.reasonString ?? null
    }
    client.subscribe('chat/scram', { qos: 1 }, (err, _subs, suback) => {
      result.subscription = { error: err ? err.message : null, codes: suback?.granted ?? null }
      if (err) {
        result.error = `subscribe: ${err.message}`
        finish(2)
        return
      }
      client.publish('chat/scram', 'hello from mqtt.js', { qos: 1 }, (err, packet) => {
        result.puback = { error: err ? err.message : null, reason: packet?.reasonCode ?? 0 }
        doneWhenBoth()
      })
    })
  })
}

client.connect()
