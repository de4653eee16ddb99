/** commander's argParser for a repeatable option: each use adds its value to the list. */
export const collect = (v: string, prev: string[]): string[] => [...prev, v];
