/**
 * Which driver serves a dataset. Drivers are made on first use, so an
 * appliance without ZFS or btrfs never loads or probes them.
 */
import path from 'node:path';
import type { Driver, DriverName } from './driver.js';
import type { Home } from '../home.js';

export class Storage {
  private readonly made = new Map<DriverName, Promise<Driver>>();

  /** `enabled`: the drivers this appliance uses (SYNCSH_DRIVERS); the others are neither probed nor listed */
  constructor(
    private readonly home: Home,
    private readonly enabled: readonly DriverName[] = ['fs', 'zfs', 'btrfs'],
  ) {}

  driver(name: DriverName): Promise<Driver> {
    let driver = this.made.get(name);
    if (!driver) {
      driver = this.make(name);
      this.made.set(name, driver);
    }
    return driver;
  }

  /** the driver, or an error saying why it cannot be used on this appliance */
  async usable(name: DriverName): Promise<Driver> {
    if (!this.enabled.includes(name)) throw new Error(`The ${name} driver is not enabled on this appliance (it uses ${this.enabled.join(', ')}).`);
    const driver = await this.driver(name);
    const reason = await driver.unavailableReason();
    if (reason) throw new Error(`The ${name} driver cannot be used on this appliance: ${reason}`);
    return driver;
  }

  /** put a driver in place of the default one (another zfs binary, a fault-injecting wrapper in a test) */
  use(driver: Driver): void {
    this.made.set(driver.name, Promise.resolve(driver));
  }

  private async make(name: DriverName): Promise<Driver> {
    switch (name) {
      case 'fs': {
        const { createFsDriver } = await import('./fs/index.js');
        return createFsDriver(this.home.fsRoot);
      }
      case 'zfs': {
        const { createZfsDriver } = await import('./zfs/index.js');
        // sends that may leave zfs-fuse holds are journaled here, for recover after a kill -9
        return createZfsDriver({ sendJournal: path.join(this.home.root, 'run', 'zfs-sends') });
      }
      case 'btrfs': {
        const { createBtrfsDriver } = await import('./btrfs/index.js');
        return createBtrfsDriver();
      }
    }
  }
}
