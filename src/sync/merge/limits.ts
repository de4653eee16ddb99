/** Default input limit of a merger: 16 MiB. */
export const DEFAULT_MERGE_MAX_BYTES = 16 * 1024 * 1024;
/** The text merger's default limit: 4 MiB (diff3's LCS is superlinear in the number of lines). */
export const TEXT_MERGE_MAX_BYTES = 4 * 1024 * 1024;
