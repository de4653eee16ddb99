/**
 * The name of a conflict copy: `name.conflict-<device>-<YYYYMMDD-HHMMSS>.ext` beside the original
 * (`report.txt` → `report.conflict-laptop-20261202-093012.txt`; no extension: appended;
 * a leading dot is not an extension). `n` > 1 appends `-n` to the timestamp for a second copy in
 * the same second. `device` is the device whose version lost the path.
 */
export function conflictCopyName(path: string, device: string, at: Date, n = 1): string {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const name = path.slice(slash + 1);
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  const iso = at.toISOString(); // 2026-12-02T09:30:12.123Z
  const ts = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
  return `${dir}${stem}.conflict-${device}-${ts}${n > 1 ? `-${n}` : ''}${ext}`;
}

/** True for a name made by {@link conflictCopyName}. */
export function isConflictCopy(path: string): boolean {
  return /\.conflict-[A-Za-z0-9_]+-\d{8}-\d{6}(-\d+)?(\.[^/]*)?$/.test(path);
}
