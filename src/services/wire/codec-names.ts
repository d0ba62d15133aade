/** The codecs a service may name (the `compress` property), apart from their streams so a config can name one cheaply. */
export const CODECS = ['none', 'gzip', 'zstd', 'lz4'] as const;
export type Codec = (typeof CODECS)[number];

export function parseCodec(value: string, label = 'compress'): Codec {
  const v = value.trim().toLowerCase();
  if ((CODECS as readonly string[]).includes(v)) return v as Codec;
  throw new Error(`The value of ${label} must be one of ${CODECS.join(', ')}, not "${value}".`);
}
