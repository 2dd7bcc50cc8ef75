/**
 * docs/api.md against the package's TypeScript declarations (dist/src/index.d.ts, read with the project's own
 * TypeScript): every export is named on the page, every public member of every exported class, every option of
 * UpgraderOptions/ListenOptions/DgramOptions and every Upgrader event; every `upgrader.x` / `Upgrader.x` the page
 * names exists; and every ```ts example on the page type-checks against the declarations, imported by the
 * package's name as a user would (each block is a module of its own, written under dist/ so that the package's
 * self-reference resolves; strict, as the project compiles).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { ROOT } from './helpers.js';

const API = fs.readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8');
const DECLARATIONS = path.join(ROOT, 'dist/src/index.d.ts');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string };

/** The page's code: fenced blocks and inline code spans, where names are documented. */
const CODE = [
  ...API.matchAll(/```[a-z]*\n([\s\S]*?)```/g),
  ...API.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`\n]+)`/g),
]
  .map((m) => m[1]!)
  .join('\n');

function named(name: string, text = CODE): boolean {
  return new RegExp(`(^|[^\\w$])${name.replace(/\$/g, '\\$')}(?![\\w$])`).test(text);
}

interface Surface {
  exports: string[];
  /** Exported class -> its public members (static and instance), without EventEmitter's. */
  classes: Map<string, string[]>;
  /** Exported interface -> its property names. */
  interfaces: Map<string, string[]>;
}

function surface(): Surface {
  const program = ts.createProgram([DECLARATIONS], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: ['node'],
    skipLibCheck: true,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(DECLARATIONS);
  assert.ok(file, `${DECLARATIONS} exists (npm run build)`);
  const moduleSymbol = checker.getSymbolAtLocation(file);
  assert.ok(moduleSymbol);
  const out: Surface = { exports: [], classes: new Map(), interfaces: new Map() };
  for (const sym of checker.getExportsOfModule(moduleSymbol)) {
    const name = sym.getName();
    out.exports.push(name);
    const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
    const decl = target.declarations?.[0];
    if (decl && ts.isClassDeclaration(decl)) {
      const members: string[] = [];
      for (const m of decl.members) {
        if (!m.name || ts.isPrivateIdentifier(m.name) || ts.isConstructorDeclaration(m)) continue;
        const mods = ts.getCombinedModifierFlags(m as ts.Declaration);
        if (mods & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) continue;
        const memberName = m.name.getText(decl.getSourceFile());
        if (!members.includes(memberName)) members.push(memberName);
      }
      out.classes.set(name, members);
    } else if (decl && ts.isInterfaceDeclaration(decl)) {
      const type = checker.getDeclaredTypeOfSymbol(target);
      out.interfaces.set(
        name,
        checker.getPropertiesOfType(type).map((p) => p.getName()),
      );
    }
  }
  return out;
}

/** EventEmitter's methods: Node documents them; a class that declares them again only narrows their types. */
const EMITTER_METHODS = [
  'on',
  'once',
  'off',
  'emit',
  'addListener',
  'removeListener',
  'removeAllListeners',
  'prependListener',
  'prependOnceListener',
  'listeners',
  'rawListeners',
  'listenerCount',
  'eventNames',
  'setMaxListeners',
  'getMaxListeners',
];
const OPTION_TYPES = [
  'UpgraderOptions',
  'ListenOptions',
  'DgramOptions',
  'FdChannelServerOptions',
  'FdChannelOptions',
  'AdoptOptions',
  'NotifyOptions',
  'ListenFdsOptions',
];

test('docs/api.md names every export, every public class member, every option and event', () => {
  const s = surface();
  assert.ok(s.exports.includes('Upgrader') && s.exports.length > 40, `read the exports: ${s.exports.join(', ')}`);
  const missing: string[] = [];
  for (const name of s.exports) if (!named(name)) missing.push(name);
  for (const [cls, members] of s.classes) {
    for (const m of members) {
      if (EMITTER_METHODS.includes(m)) continue;
      if (cls === 'Upgrader') {
        // Upgrader's members are named as a user writes them: upgrader.listen(...), Upgrader.start(...).
        if (!named(`upgrader.${m}`) && !named(`Upgrader.${m}`)) missing.push(`upgrader.${m}`);
      } else if (!named(m)) missing.push(`${cls}#${m}`);
    }
  }
  for (const iface of OPTION_TYPES) {
    const props = s.interfaces.get(iface);
    assert.ok(props, `${iface} is an exported interface`);
    for (const p of props) if (!named(p)) missing.push(`${iface}.${p}`);
  }
  for (const events of ['UpgraderEvents', 'FdChannelEvents', 'FdChannelServerEvents']) {
    for (const e of s.interfaces.get(events) ?? []) if (!named(`'${e}'`, API)) missing.push(`${events} '${e}'`);
  }
  assert.deepEqual(missing, [], 'documented in docs/api.md');
});

test('every upgrader.x and Upgrader.x that docs/api.md names exists', () => {
  const s = surface();
  const members = new Set([...(s.classes.get('Upgrader') ?? []), ...EMITTER_METHODS]);
  const unknown = new Set<string>();
  for (const m of CODE.matchAll(/\b[uU]pgrader\.([A-Za-z_$][\w$]*)/g)) if (!members.has(m[1]!)) unknown.add(m[0]);
  assert.deepEqual([...unknown], [], 'names docs/api.md uses that the Upgrader declarations do not have');
});

test('every ```ts example in docs/api.md type-checks against the package declarations', (t) => {
  const blocks = [...API.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length >= 8, `found ${blocks.length} ts blocks`);
  for (const b of blocks) {
    const ok = !/from '[^'.:/]+'/.test(b) || b.includes(`from '${PKG.name}'`);
    assert.ok(ok, `an example imports '${PKG.name}':\n${b}`);
  }
  // Under dist/ (inside the package, so `import ... from '<name>'` resolves to the package's own exports, the
  // declarations users get), as .mts files: ES modules with top-level await, as the examples are written.
  const dir = fs.mkdtempSync(path.join(ROOT, 'dist', 'api-doc-check-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const files = blocks.map((code, i) => {
    const file = path.join(dir, `block-${i + 1}.mts`);
    fs.writeFileSync(file, `${code}\nexport {};\n`);
    return file;
  });
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2022.d.ts'],
    types: ['node'],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
  });
  const errors = ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file ? d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1 : 0;
    const where = d.file ? `${path.basename(d.file.fileName)}:${line}` : '';
    const block = d.file ? blocks[Number(/block-(\d+)/.exec(d.file.fileName)?.[1]) - 1]?.split('\n')[0] : '';
    return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')} (block starting: ${block})`;
  });
  assert.deepEqual(errors, [], 'docs/api.md examples compile');
});
