// A minimal lienthong gateway in Node.js with amqplib: nothing from the Python SDK, only
// the AMQP contract of the README ("Writing a gateway"). It
//   * sends a document (an edXML file) to lt.submit and waits for the hub's receipt on
//     RabbitMQ direct reply-to;
//   * takes copies from its inbox (lt.gw.<gateway>.inbox), drops a copy whose message_id
//     it has already handled (the hub may deliver a copy twice), answers each document
//     with a status 01 (arrived) for each of its agencies the copy is addressed to, and
//     acks the copy only after the 01 was accepted.
//
//   LIENTHONG_GATEWAY_URL=amqp://GATEWAY:PASSWORD@127.0.0.1:5672/lienthong \
//   LIENTHONG_GATEWAY_ID=GATEWAY node gateway.js [--send FILE --from AGENCY] [--idle SECONDS]
//
// One JSON line per event on stdout: {"event":"receipt",...}, {"event":"copy",...},
// {"event":"answered",...}, {"event":"duplicate",...}, {"event":"idle"}.
'use strict';

const amqp = require('amqplib');
const crypto = require('node:crypto');
const fs = require('node:fs');

const SUBMIT = 'lt.submit';
const DIRECT_REPLY = 'amq.rabbitmq.reply-to';

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function out(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

// agency codes are matched in their canonical form: no whitespace, upper case
const normalize = (code) => code.replace(/\s+/g, '').toUpperCase();

// The first text of an element of the package header (a minimal example: a real gateway
// parses the package with an XML library).
function field(xml, tag) {
  const m = xml.match(new RegExp(`<edXML:${tag}>([^<]*)</edXML:${tag}>`));
  return m ? m[1] : null;
}

function fromOrgan(xml) {
  const m = xml.match(/<edXML:From>\s*<edXML:OrganId>([^<]*)<\/edXML:OrganId>/);
  return m ? m[1] : null;
}

// The name the document gives an agency among its recipients (To), else the code itself:
// a status package must name its sender (From/OrganName).
function recipientName(xml, agency) {
  for (const m of xml.matchAll(/<edXML:To>([\s\S]*?)<\/edXML:To>/g)) {
    if (normalize(field(m[1], 'OrganId') || '') === normalize(agency)) {
      return field(m[1], 'OrganName') || agency;
    }
  }
  return agency;
}

function pad(n) { return String(n).padStart(2, '0'); }

function vietnamNow() {  // yyyy/MM/dd HH:mm:ss in Vietnam time (UTC+7)
  const t = new Date(Date.now() + 7 * 3600 * 1000);
  return `${t.getUTCFullYear()}/${pad(t.getUTCMonth() + 1)}/${pad(t.getUTCDate())} ` +
    `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}`;
}

function esc(text) {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// A status package (QCVN 102:2016 edXML) answering a document.
function statusPackage(ownAgency, documentXml, code, description) {
  const number = field(documentXml, 'CodeNumber');
  const notation = field(documentXml, 'CodeNotation');
  const docCode = [number, notation].filter(Boolean).join('/');
  const ns = 'http://www.mic.gov.vn/TBT/QCVN_102_2016';
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<edXML xmlns="${ns}">`,
    `  <edXML:edXMLEnvelope xmlns:edXML="${ns}">`,
    '    <edXML:edXMLHeader>',
    '      <edXML:MessageHeader>',
    '        <edXML:From>',
    `          <edXML:OrganId>${esc(ownAgency)}</edXML:OrganId>`,
    `          <edXML:OrganName>${esc(recipientName(documentXml, ownAgency))}</edXML:OrganName>`,
    '        </edXML:From>',
    '        <edXML:ResponseFor>',
    `          <edXML:OrganId>${esc(fromOrgan(documentXml))}</edXML:OrganId>`,
    docCode ? `          <edXML:Code>${esc(docCode)}</edXML:Code>` : null,
    `          <edXML:PromulgationDate>${field(documentXml, 'PromulgationDate')}</edXML:PromulgationDate>`,
    `          <edXML:DocumentId>${esc(field(documentXml, 'DocumentId'))}</edXML:DocumentId>`,
    '        </edXML:ResponseFor>',
    `        <edXML:StatusCode>${code}</edXML:StatusCode>`,
    `        <edXML:Description>${esc(description)}</edXML:Description>`,
    `        <edXML:Timestamp>${vietnamNow()}</edXML:Timestamp>`,
    '      </edXML:MessageHeader>',
    '    </edXML:edXMLHeader>',
    '  </edXML:edXMLEnvelope>',
    '</edXML>',
  ];
  return Buffer.from(lines.filter((l) => l !== null).join('\r\n') + '\r\n', 'utf8');
}

// Headers the hub sets on a copy; lt-recipients is an AMQP array (of long strings).
function headerList(value) {
  if (!Array.isArray(value)) return [];
  return value.map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v)));
}

async function main() {
  const url = process.env.LIENTHONG_GATEWAY_URL;
  if (!url) throw new Error('set LIENTHONG_GATEWAY_URL');
  const user = decodeURIComponent(new URL(url).username);
  const gatewayId = process.env.LIENTHONG_GATEWAY_ID || user;
  const idle = Number(arg('--idle', '0')) * 1000;

  const connection = await amqp.connect(url);
  const channel = await connection.createConfirmChannel();
  await channel.prefetch(50);

  // receipts of this client's own sends come straight back (direct reply-to)
  const waiting = new Map();  // message_id -> resolve
  await channel.consume(DIRECT_REPLY, (msg) => {
    const receipt = JSON.parse(msg.content.toString('utf8'));
    const resolve = waiting.get(receipt.message_id);
    if (resolve && receipt.type !== 'delivery') { waiting.delete(receipt.message_id); resolve(receipt); }
  }, { noAck: true });

  // publish to lt.submit (routing key: the sender agency) and wait for the receipt
  async function submit(body, senderAgency, kind) {
    const messageId = crypto.randomUUID();
    const receipt = new Promise((resolve, reject) => {
      waiting.set(messageId, resolve);
      setTimeout(() => { waiting.delete(messageId); reject(new Error(`no receipt for ${messageId}`)); }, 30000);
    });
    await new Promise((resolve, reject) => {
      channel.publish(SUBMIT, normalize(senderAgency), body, {
        messageId, userId: user, type: kind, contentType: 'application/xml',
        persistent: true, replyTo: DIRECT_REPLY,
        headers: { 'lt-sent-at': Date.now() / 1000 },
      }, (err) => (err ? reject(err) : resolve()));
    });
    return receipt;
  }

  const file = arg('--send');
  if (file) {
    const body = fs.readFileSync(file);
    const from = arg('--from') || fromOrgan(body.toString('utf8'));
    const receipt = await submit(body, from, 'edoc');
    out('receipt', { type: receipt.type, hub_id: receipt.hub_id, receipt_id: receipt.receipt_id,
      message_id: receipt.message_id, reason: receipt.reason || null });
  }

  const handled = new Set();  // copy ids already handled (keep them on disk in production)
  let timer = null;
  const rearm = () => {
    if (!idle) return;
    clearTimeout(timer);
    timer = setTimeout(async () => { out('idle', {}); await connection.close(); }, idle);
  };
  rearm();
  await channel.consume(`lt.gw.${gatewayId}.inbox`, async (msg) => {
    rearm();
    const copyId = msg.properties.messageId;
    if (handled.has(copyId)) { out('duplicate', { copy_id: copyId }); channel.ack(msg); return; }
    const headers = msg.properties.headers || {};
    const kind = msg.properties.type || String(headers['lt-kind'] || '');
    const recipients = headerList(headers['lt-recipients']);
    out('copy', { copy_id: copyId, kind, hub_id: String(headers['lt-hub-id'] || ''), recipients });
    try {
      if (kind === 'edoc') {
        const xml = msg.content.toString('utf8');
        for (const agency of recipients) {
          const r = await submit(statusPackage(agency, xml, '01', 'Văn thư: đã nhận'), agency, 'status');
          out('answered', { copy_id: copyId, agency, code: '01', receipt: r.type, hub_id: r.hub_id,
            reason: r.reason || null });
        }
      }
      handled.add(copyId);
      channel.ack(msg);
    } catch (err) {
      out('error', { copy_id: copyId, error: String(err) });
      channel.nack(msg, false, true);  // comes again
    }
  });
}

main().catch((err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(1); });
