/** Moved to src/services/password-hash.ts with the password store; kept for the imports that name it here. */
export * from '../services/password-hash.js';
