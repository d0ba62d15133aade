#!/usr/bin/env node
// Built by `npm ci` (prepare) or `npm run build`: tsc into dist/, then scripts/bundle.mjs into dist/bundle/.
import '../dist/bundle/bin.js';
