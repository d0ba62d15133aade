#!/usr/bin/env node
// Built by `npm ci` (prepare) or `npm run build` into dist/.
import '../dist/bin.js';
