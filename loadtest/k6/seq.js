// The sequence rule of the k6 scripts, without k6 imports so that Node can test it
// (tests/browser/client-gaps.mjs): the same rule as /client.js. A message whose `prev` (the record
// before it in its partition) is past the last seqNo taken in follows missed records; seqNos
// themselves need not be consecutive (transaction markers take offsets).
export function isGap(f, last) {
  return typeof f.prev === "number" ? f.prev > last : f.seqNo !== last + 1;
}
