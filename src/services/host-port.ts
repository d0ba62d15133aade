/** `ADDRESS:PORT` as typed for a listener (`[::1]:80` for IPv6); null when it is not one */
export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(text: string): HostPort | null {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) return null;
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}
