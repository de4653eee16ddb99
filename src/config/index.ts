export * from './schema.js';
export { loadConfig, parseConfig, parseConfigText, defaultPriceTable, formatPath, type ParseConfigOptions } from './load.js';
