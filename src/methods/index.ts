// The methods, and a registry so configs name one: `"method": { "name": "seam", "variant": "code" }` builds SEAM
// with those settings. The trainer, CAM stage, CLI and report read names, papers and settings from here only.
import { z } from 'zod';
import type { MethodDefinition } from './method.js';
import { cam } from './cam.js';
import { seam } from './seam.js';
import { pixelSs } from './pixelss.js';
import { mcis } from './mcis.js';
import { amr } from './amr.js';

export * from './method.js';
export * from './blocks.js';
export * from './cam.js';
export * from './seam.js';
export * from './pixelss.js';
export * from './mcis.js';
export * from './amr.js';

const REGISTRY = new Map<string, MethodDefinition>();

/**
 * Adds a method. Its name must be new and lower case; its settings a zod object (z.object) in which every field
 * has a default or is optional (a config naming only the method must be complete), without a field `name`.
 */
export function registerMethod<S extends z.ZodObject>(definition: MethodDefinition<S>): void {
  const d = definition as unknown as Partial<MethodDefinition>;
  const name = typeof d.name === 'string' ? d.name : '';
  if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new TypeError(`method name must be lower case letters, digits and '-', got ${JSON.stringify(d.name)}`);
  if (REGISTRY.has(name)) throw new TypeError(`method '${name}' is already registered`);
  if (!(d.settings instanceof z.ZodObject)) {
    throw new TypeError(`method '${name}' has no settings schema: give it \`settings: z.object({...})\` (z.object({}) for none)`);
  }
  if ('name' in d.settings.shape) throw new TypeError(`method '${name}': 'name' is reserved (it selects the method), rename that setting`);
  const empty = d.settings.safeParse({});
  if (!empty.success) {
    throw new TypeError(`method '${name}': every setting needs a default (${empty.error.issues.map((i) => i.path.join('.')).join(', ')} has none)`);
  }
  const unknown = (d.inferenceSettings ?? []).filter((k) => !(k in d.settings!.shape));
  if (unknown.length) throw new TypeError(`method '${name}': inferenceSettings names no setting: ${unknown.join(', ')}`);
  if (typeof d.build !== 'function') throw new TypeError(`method '${name}' has no build function`);
  if (typeof d.paper !== 'string' || !d.paper || typeof d.title !== 'string' || !d.title) {
    throw new TypeError(`method '${name}' needs a title and the paper it follows`);
  }
  REGISTRY.set(name, definition as unknown as MethodDefinition);
}

registerMethod(cam);
registerMethod(seam);
registerMethod(pixelSs);
registerMethod(mcis);
registerMethod(amr);

/** The registered methods' names, in registration order. */
export function methodNames(): string[] {
  return [...REGISTRY.keys()];
}

export function methodDefinitions(): MethodDefinition[] {
  return [...REGISTRY.values()];
}

/** A method's definition; an unknown name is an error listing the known ones. */
export function methodDefinition(name: string): MethodDefinition {
  const d = REGISTRY.get(name);
  if (!d) throw new RangeError(`unknown method '${name}' (known: ${methodNames().join(', ')})`);
  return d;
}

/** The settings a method uses when a config names only the method. */
export function methodDefaults(name: string): Record<string, unknown> {
  return methodDefinition(name).settings.parse({}) as Record<string, unknown>;
}

/**
 * The config's `method` section: a union on `name` of every registered method's settings, so a resolved config
 * holds only the chosen method's. Rebuilt when methods were registered since the last call.
 */
export function methodConfigSchema(): z.ZodType<{ name: string } & Record<string, unknown>> {
  if (union?.size === REGISTRY.size) return union.schema;
  const options = methodDefinitions().map((d) => z.object({ name: z.literal(d.name), ...d.settings.shape }).strict());
  const [first, ...rest] = options;
  if (!first) throw new Error('no methods are registered');
  const schema = z.discriminatedUnion('name', [first, ...rest], { error: () => `must name a method: ${methodNames().join(', ')}` });
  union = { size: REGISTRY.size, schema: schema as unknown as z.ZodType<{ name: string } & Record<string, unknown>> };
  return union.schema;
}

/** The union as last built, and for how many methods (the registry only grows). */
let union: { size: number; schema: z.ZodType<{ name: string } & Record<string, unknown>> } | null = null;

/** The settings of a method that only its inference reads (none for an unknown name: the config reports that). */
export function inferenceSettingKeys(name: string): readonly string[] {
  return REGISTRY.get(name)?.inferenceSettings ?? [];
}
