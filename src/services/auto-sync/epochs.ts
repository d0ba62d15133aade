/**
 * Kept so that imports of the old grab-bag keep working while the branches
 * that use it land; new code imports from where each piece lives:
 *  - ../roles.ts: roles and epochs, pure (the epoch rule, shared with auto-cdp);
 *  - ./endpoints.ts: which copy is here, the peer's view of a config;
 *  - ./contact.ts: the epoch rule applied on contact, timeouts, PeerRefused;
 *  - ./maintenance.ts: inSplitBrain.
 */
export { flip, type Role } from '../roles.js';
export { fromPeerView, holdsSource, localEndpoint, peerHostOf, rehost, remoteEndpoint, shortDirection, toPeerView } from './endpoints.js';
export { asMasterStore, NOT_DOWN, checkOnContact, contactBeforeRun, contactTimeoutMs, keepAndRollBack, mountIfNot, PeerRefused, peerConfig, rd, withTimeout, type ContactDeps, type ContactOutcome, type PeerConfigSide } from './contact.js';
export { inSplitBrain } from './maintenance.js';
