// Number and time formatting, in the browser's locale.

const int = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const rate1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const stamp = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export const fmtInt = (n) => (Number.isFinite(n) ? int.format(n) : "–");

/** plural is n, formatted, with the word for one or for many. */
export const plural = (n, one, many) => `${fmtInt(n)} ${n === 1 ? one : many}`;
export const fmtRate = (n) => (Number.isFinite(n) ? rate1.format(n) : "–");
export const fmtCompact = (n) => (Number.isFinite(n) ? compact.format(n) : "–");
export const fmtClock = (d) => clock.format(d);
export const fmtStamp = (d) => stamp.format(d);

/** ago says how long before now the date was, coarsely: "4 s", "3 min", "2 h", "5 d". */
export function ago(date, now = Date.now()) {
  const s = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d`;
}
