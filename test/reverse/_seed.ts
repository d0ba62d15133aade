/** The log lines of the NexentaStor "Auto-Sync in reverse" document, as every reverse test looks for them. */
export const SEED = {
  fmri: (name: string) => `[Reverse-direction: working with fmri: auto-sync:${name} ]`,
  alive: '[Reverse-direction: remote appliance: alive ]',
  down: '[Reverse-direction: remote appliance: down ]',
  l2rUp: '[Reverse-direction: L2R, master, remote_up. ]',
  unmounting: '[Reverse-direction: Unmounting master copy of a folder ]',
  syncing: '[Reverse-direction: Syncing last delta before changing direction ]',
  mountingRemote: '[Reverse-direction: Mounting folder on remote side ]',
  dr: '[Reverse-direction: DR scenario. We are non-master and remote is down ]',
  rereading: '[Rereading configuration. ]',
  rollingBack: '[Reverse-direction: sync_configuration_with_remote_side() - DR case, rolling back to last synced state ]',
};
