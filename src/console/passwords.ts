/** The password store is a service now (src/services/console-passwords.ts); kept for the console server's imports. */
export * from '../services/console-passwords.js';
