/**
 * The supervisor's copy of every listener when a generation becomes ready: what it bound and registered
 * joins the inventory (and the service manager's fd store), and what it does not use any more is closed —
 * the supervisor's copy was the last one once the old generation drains.
 */
import type { Held, Inventory } from '../handoff/inventory.js';
import { formatAddress } from '../handoff/messages.js';
import type { LogFn } from '../handoff/server.js';
import type { ServiceNotifier } from '../integrations/systemd.js';

export function promoteListeners(
  inventory: Inventory,
  registered: Inventory,
  used: ReadonlySet<string>,
  notifier: Pick<ServiceNotifier, 'store' | 'unstore'>,
  log: LogFn,
): void {
  for (const reg of registered) {
    const name = reg.entry.name;
    if (inventory.has(name)) notifier.unstore(name);
    inventory.set(reg); // closes the fd it replaces
    if (reg.entry.origin !== 'activation') notifier.store(name, reg.fd);
  }
  registered.clear();
  for (const { entry } of inventory.entries()) {
    const name = entry.name;
    if (used.has(name)) continue;
    inventory.close(name);
    notifier.unstore(name);
    // An unnamed activated socket that the generation took by position lives on under its new name.
    const address = formatAddress(entry.address);
    const takenHere = (o: Held) =>
      o.entry.origin === 'activation' && used.has(o.entry.name) && formatAddress(o.entry.address) === address;
    const renamed = entry.unnamed ? inventory.entries().find(takenHere) : undefined;
    if (renamed) log('info', 'listener-named', { name: renamed.entry.name, address });
    else {
      const reason = 'not used by the new generation';
      log('info', 'listener-closed', { name: entry.unnamed ? null : name, address, reason });
    }
  }
}
