/** Every scenario of the campaign, in the order they run. */
import type { Scenario } from './campaign.js';
import { killScenario } from './kill.js';
import { damageScenario } from './damage.js';
import { fullDiskScenario } from './full-disk.js';
import { linkScenario } from './link.js';
import { nbdKillScenario } from './nbd-kill.js';
import { zvolKillScenario } from './zvol-kill.js';

export function allScenarios(): Scenario[] {
  return [killScenario('local'), killScenario('peer'), damageScenario(), fullDiskScenario(), linkScenario(), nbdKillScenario(), zvolKillScenario()];
}
