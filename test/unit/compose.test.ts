/**
 * What a user of `docker compose up` depends on, read from the files
 * themselves (no Docker needed): the services and their host ports, health
 * checks that really probe each engine, start-up ordering, the single-node
 * Kafka settings, pinned images, and Prometheus scraping every processor.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { NODE_FLAGS } from '../../cli/processes.ts';
import { connectionsFromEnv } from '../../lib/settings.ts';

const ROOT = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, ROOT), 'utf8');

type PortSpec = string | number | { target?: number | string; published?: number | string; host_ip?: string };
type Service = {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  ports?: PortSpec[];
  environment?: Record<string, string | number | boolean | null> | string[];
  healthcheck?: { test?: string | string[]; disable?: boolean };
  depends_on?: string[] | Record<string, { condition?: string }>;
  entrypoint?: string | string[];
  command?: string | string[];
  volumes?: (string | { source?: string; target?: string })[];
};

const compose = parse(read('docker-compose.yml')) as { services?: Record<string, Service> };
const services = compose.services ?? {};

const INFRASTRUCTURE = ['kafka', 'schema-registry', 'clickhouse', 'prometheus', 'grafana'] as const;
const PROCESSORS = ['validate', 'score', 'decide'] as const;
/** Each reference pipeline and the prefix of its services' names (signup-risk's are unprefixed). */
const PIPELINES = [
  { pipeline: 'signup-risk', prefix: '' },
  { pipeline: 'ticket-triage', prefix: 'ticket-triage-' },
] as const;
/** Every long-running sluice process: the stages, the ClickHouse sink and the monitor of each pipeline. */
const PROCESSES = PIPELINES.flatMap(({ prefix }) => [...PROCESSORS, 'sink', 'monitor'].map((name) => `${prefix}${name}`));

function service(name: string): Service {
  const found = services[name];
  assert.ok(found, `docker-compose.yml has no service "${name}"`);
  return found;
}

/** The environment as a map, from either the map or the `KEY=value` list form. */
function env(name: string): Record<string, string> {
  const raw = service(name).environment ?? {};
  if (Array.isArray(raw)) {
    return Object.fromEntries(
      raw.map((entry) => {
        const at = entry.indexOf('=');
        return at === -1 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(raw).map(([key, value]) => [key, value === null ? '' : String(value)]));
}

/** Host port → container port for every fixed host port a service publishes. */
function publishedPorts(name: string): Map<number, number> {
  const published = new Map<number, number>();
  for (const spec of service(name).ports ?? []) {
    if (typeof spec === 'object') {
      if (spec.published !== undefined && spec.target !== undefined) published.set(Number(spec.published), Number(spec.target));
      continue;
    }
    // [HOST_IP:]HOST:CONTAINER[/PROTOCOL]; a bare CONTAINER gets a random host port.
    const parts = String(spec).replace(/\/\w+$/, '').split(':');
    if (parts.length < 2) continue;
    published.set(Number(parts.at(-2)), Number(parts.at(-1)));
  }
  return published;
}

/** Dependency → condition; the list form means `service_started`. */
function dependsOn(name: string): Record<string, string> {
  const raw = service(name).depends_on ?? {};
  if (Array.isArray(raw)) return Object.fromEntries(raw.map((dependency) => [dependency, 'service_started']));
  return Object.fromEntries(Object.entries(raw).map(([dependency, spec]) => [dependency, spec?.condition ?? 'service_started']));
}

/** The health check command as one string, or undefined when there is none. */
function healthCommand(name: string): string | undefined {
  const check = service(name).healthcheck;
  if (!check || check.disable === true || check.test === undefined) return undefined;
  const test = Array.isArray(check.test) ? check.test : ['CMD-SHELL', check.test];
  const [kind, ...command] = test;
  if (kind !== 'CMD' && kind !== 'CMD-SHELL') return undefined; // NONE, or malformed
  const joined = command.join(' ').trim();
  return joined === '' ? undefined : joined;
}

const words = (value: string | string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? value.map(String) : value.split(/\s+/).filter(Boolean);

const DOCKERFILE = read('Dockerfile');
const IMAGE_ENTRYPOINT: string[] = (() => {
  const line = DOCKERFILE.match(/^ENTRYPOINT\s+(\[.*\])\s*$/m);
  return line?.[1] ? (JSON.parse(line[1]) as string[]) : [];
})();

/** What the container runs: its entrypoint (the service's or the image's) followed by its command. */
function argv(name: string): string[] {
  const { entrypoint, command } = service(name);
  return [...(entrypoint === undefined ? IMAGE_ENTRYPOINT : words(entrypoint)), ...words(command)];
}

/** The tag of an image reference, or undefined when it has none. */
function imageTag(image: string): string | undefined {
  const withoutDigest = image.split('@')[0] ?? '';
  const lastSlash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.indexOf(':', lastSlash + 1);
  return colon === -1 ? undefined : withoutDigest.slice(colon + 1);
}

describe('docker-compose.yml', () => {
  it('defines the infrastructure, the init job and the three processors', () => {
    for (const name of [...INFRASTRUCTURE, 'sluice-init', ...PROCESSES]) service(name);
  });

  it('publishes each engine on its usual host port', () => {
    const expected: [string, number][] = [
      ['kafka', 9092],
      ['schema-registry', 8081],
      ['clickhouse', 8123],
      ['prometheus', 9090],
      ['grafana', 3000],
    ];
    for (const [name, port] of expected) {
      assert.equal(publishedPorts(name).get(port), port, `${name} must publish host port ${port} (to its port ${port})`);
    }
  });

  it('gives every infrastructure service a health check that really probes it', () => {
    const probes: Record<(typeof INFRASTRUCTURE)[number], RegExp> = {
      kafka: /kafka-(broker-api-versions|topics)\.sh\b.*--bootstrap-server/,
      'schema-registry': /:8081\/subjects/,
      clickhouse: /:8123\/ping|clickhouse-client/,
      prometheus: /:9090\/-\/(healthy|ready)/,
      grafana: /:3000\/api\/health/,
    };
    for (const name of INFRASTRUCTURE) {
      const command = healthCommand(name);
      assert.ok(command, `${name} has no health check command`);
      assert.match(command, probes[name], `${name}'s health check does not probe the service`);
    }
  });

  it('checks that each processor is alive on its metrics port', () => {
    for (const name of PROCESSES) {
      const command = healthCommand(name);
      assert.ok(command, `${name} has no health check command`);
      assert.match(command, /\/livez\b/, `${name}'s health check must ask /livez`);
      assert.match(command, /SLUICE_METRICS_PORT|:9464\b/, `${name}'s health check must use the metrics port`);
    }
  });

  it('leaves no stray "$" for Compose to interpolate', () => {
    // Compose expands $NAME and ${NAME...} everywhere, health check commands
    // included; any other "$" (a shell or JavaScript one) must be written "$$".
    const stray = read('docker-compose.yml')
      .split('\n')
      .filter((line) => !line.trimStart().startsWith('#'))
      .flatMap((line) => line.replace(/\$\$/g, '').match(/\$(?!\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}|[A-Za-z_])\S*/g) ?? []);
    assert.deepEqual(stray, [], 'escape these as $$');
  });

  it('waits for a dependency to be healthy wherever that dependency has a health check', () => {
    for (const name of Object.keys(services)) {
      for (const [dependency, condition] of Object.entries(dependsOn(name))) {
        service(dependency);
        if (healthCommand(dependency) !== undefined) {
          assert.equal(condition, 'service_healthy', `${name} must wait for ${dependency} to be healthy`);
        }
      }
    }
  });

  it('starts the processors only after init has succeeded and Kafka and the registry are healthy', () => {
    for (const name of PROCESSES) {
      const dependencies = dependsOn(name);
      assert.equal(dependencies['sluice-init'], 'service_completed_successfully', `${name} must wait for sluice-init to succeed`);
      assert.equal(dependencies['kafka'], 'service_healthy', `${name} must wait for kafka`);
      assert.equal(dependencies['schema-registry'], 'service_healthy', `${name} must wait for the schema registry`);
    }
    const init = dependsOn('sluice-init');
    assert.equal(init['kafka'], 'service_healthy', 'sluice-init must wait for kafka');
    assert.equal(init['schema-registry'], 'service_healthy', 'sluice-init must wait for the schema registry');
    assert.equal(dependsOn('schema-registry')['kafka'], 'service_healthy', 'the registry stores its schemas in Kafka');
    assert.equal(dependsOn('grafana')['prometheus'], 'service_healthy', 'Grafana reads Prometheus');
  });

  it('creates the topics, then registers the schemas, of every pipeline in the init job', () => {
    const script = argv('sluice-init').join(' ');
    for (const { pipeline } of PIPELINES) {
      const topics = script.indexOf(`node bin/sluice.ts topics create --pipeline ${pipeline}`);
      const schemas = script.indexOf(`node bin/sluice.ts schemas register --pipeline ${pipeline}`);
      assert.ok(topics !== -1, `sluice-init must run "topics create --pipeline ${pipeline}": ${script}`);
      assert.ok(schemas > topics, `sluice-init must register ${pipeline}'s schemas after creating its topics: ${script}`);
      // A failed first step must fail the job, or the processors start on a half-made pipeline.
      assert.match(script.slice(topics, schemas), /&&\s*$/, 'the two init steps must be chained with &&');
    }
  });

  it('runs each processor stage from the project image', () => {
    for (const name of [...PROCESSES, 'sluice-init']) {
      const build = service(name).build;
      const context = typeof build === 'string' ? build : build?.context;
      assert.ok(context === '.' || context === './', `${name} must be built from the project's Dockerfile`);
      if (typeof build === 'object' && build.dockerfile !== undefined) assert.equal(build.dockerfile, 'Dockerfile');
    }
    for (const { pipeline, prefix } of PIPELINES) {
      for (const stage of PROCESSORS) {
        assert.deepEqual(argv(`${prefix}${stage}`), ['node', 'bin/sluice.js', 'run', stage, '--pipeline', pipeline]);
      }
      assert.deepEqual(argv(`${prefix}sink`), ['node', 'bin/sluice.js', 'sink', 'clickhouse', '--pipeline', pipeline]);
      assert.deepEqual(argv(`${prefix}monitor`), ['node', 'bin/sluice.js', 'monitor', '--pipeline', pipeline]);
    }
  });

  it('points the processors at the engines by their in-network names, in a form the config accepts', () => {
    const advertised = env('kafka')['KAFKA_ADVERTISED_LISTENERS'] ?? '';
    for (const name of [...PROCESSES, 'sluice-init']) {
      const variables = env(name);
      const connections = connectionsFromEnv(variables);
      assert.deepEqual(connections.kafkaBrokers, ['kafka:19092'], `${name}: KAFKA_BROKERS`);
      assert.ok(advertised.includes(`//${connections.kafkaBrokers[0]}`), `kafka must advertise ${connections.kafkaBrokers[0]}`);
      assert.equal(connections.schemaRegistryUrl, 'http://schema-registry:8081', `${name}: SCHEMA_REGISTRY_URL`);
      assert.equal(new URL(connections.clickhouseUrl).host, 'clickhouse:8123', `${name}: CLICKHOUSE_URL`);
    }
    for (const name of PROCESSES) assert.equal(env(name)['SLUICE_METRICS_PORT'], '9464', `${name}: SLUICE_METRICS_PORT`);
  });

  it('runs Kafka as one KRaft node with topic auto-creation off and single-replica internal topics', () => {
    const kafka = env('kafka');
    assert.deepEqual((kafka['KAFKA_PROCESS_ROLES'] ?? '').split(',').map((role) => role.trim()).sort(), ['broker', 'controller']);
    assert.equal(kafka['KAFKA_AUTO_CREATE_TOPICS_ENABLE'], 'false');
    assert.equal(kafka['KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR'], '1');
    assert.equal(kafka['KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR'], '1');
    assert.equal(kafka['KAFKA_TRANSACTION_STATE_LOG_MIN_ISR'], '1');
    assert.match(kafka['KAFKA_ADVERTISED_LISTENERS'] ?? '', /\/\/localhost:9092\b/, 'host clients connect to localhost:9092');
  });

  it('runs the schema registry with BACKWARD compatibility', () => {
    assert.equal(env('schema-registry')['SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL']?.toLowerCase(), 'backward');
    assert.match(env('schema-registry')['SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS'] ?? '', /kafka:19092/);
  });

  it('pins every image to a version', () => {
    for (const [name, definition] of Object.entries(services)) {
      if (definition.image === undefined) {
        assert.ok(definition.build, `${name} has neither an image nor a build`);
        continue;
      }
      const tag = imageTag(definition.image);
      assert.ok(tag !== undefined || definition.image.includes('@sha256:'), `${name}: ${definition.image} is not pinned`);
      assert.notEqual(tag, 'latest', `${name}: ${definition.image} is not pinned`);
      assert.match(tag ?? '', /\d/, `${name}: ${definition.image} must name a version`);
    }
    assert.match(service('kafka').image ?? '', /^apache\/kafka:4\.1\.\d+$/);
    assert.match(service('schema-registry').image ?? '', /^confluentinc\/cp-schema-registry:\d/);
    assert.match(service('clickhouse').image ?? '', /^clickhouse\/clickhouse-server:\d/);
  });
});

describe('Dockerfile', () => {
  it('builds on a pinned Node 24 and runs the sluice CLI as a non-root user', () => {
    assert.match(DOCKERFILE, /^FROM node:24\.\d+(\.\d+)?-slim\b/m);
    assert.deepEqual(IMAGE_ENTRYPOINT, ['node', 'bin/sluice.js']);
    const users = [...DOCKERFILE.matchAll(/^USER\s+(\S+)/gm)].map((match) => match[1]);
    assert.ok(users.length > 0 && !['root', '0'].includes(users.at(-1) ?? 'root'), 'the image must end on a non-root USER');
    assert.match(DOCKERFILE, /npm ci --omit=dev/);
    assert.match(DOCKERFILE, /ONNXRUNTIME_NODE_INSTALL=skip/);
  });

  it('starts Node with the flags sluice gives the processes it spawns, wherever a stage can start', () => {
    // The young generation's size and the old generation's cap (cli/processes.ts NODE_FLAGS):
    // a container, `npx sluice` and `npm run sluice` must run a stage as the demo, the benchmark and the tests do.
    const flags = NODE_FLAGS.join(' ');
    assert.equal(DOCKERFILE.match(/NODE_OPTIONS="([^"]*)"/)?.[1], flags, "the image's NODE_OPTIONS");
    for (const bin of ['bin/sluice.js', 'bin/sluice.ts']) {
      assert.equal(read(bin).split('\n', 1)[0], `#!/usr/bin/env -S node ${flags}`, `${bin}'s first line`);
    }
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    assert.equal(scripts['sluice'], `node ${flags} bin/sluice.js`, 'the sluice npm script');
  });

  it('keeps host-only files out of the build context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map((line) => line.replace(/^\*\*\//, '').replace(/^\//, ''));
    for (const path of ['node_modules', '.sluice', 'training/.venv', '.git']) {
      assert.ok(ignored.includes(path), `.dockerignore must exclude ${path}`);
    }
  });
});

describe('Prometheus and Grafana provisioning', () => {
  type ScrapeConfig = {
    job_name?: string;
    metrics_path?: string;
    static_configs?: { targets?: string[] }[];
    dns_sd_configs?: { names?: string[]; type?: string; port?: number }[];
  };
  const prometheus = parse(read('deploy/prometheus/prometheus.yml')) as { scrape_configs?: ScrapeConfig[] };

  /** Every host:port scraped for /metrics, from static targets and DNS discovery alike. */
  function scrapedTargets(): string[] {
    const targets: string[] = [];
    for (const job of prometheus.scrape_configs ?? []) {
      if ((job.metrics_path ?? '/metrics') !== '/metrics') continue;
      for (const group of job.static_configs ?? []) targets.push(...(group.targets ?? []));
      for (const discovery of job.dns_sd_configs ?? []) {
        if ((discovery.type ?? 'SRV') !== 'A' && discovery.type !== 'AAAA') continue; // SRV records carry their own ports
        for (const name of discovery.names ?? []) targets.push(`${name}:${discovery.port}`);
      }
    }
    return targets;
  }

  it('scrapes /metrics of the three stages and the sink on the port they serve it on', () => {
    const targets = scrapedTargets();
    for (const name of PROCESSES) {
      const target = `${name}:${env(name)['SLUICE_METRICS_PORT']}`;
      assert.ok(targets.includes(target), `prometheus.yml does not scrape ${target}; it scrapes ${targets.join(', ')}`);
    }
  });

  it('mounts the checked-in configuration into Prometheus and Grafana', () => {
    const mounts = (name: string): string[] =>
      (service(name).volumes ?? []).map((volume) =>
        typeof volume === 'string' ? volume : `${volume.source ?? ''}:${volume.target ?? ''}`,
      );
    assert.ok(
      mounts('prometheus').some((mount) => /^\.\/deploy\/prometheus(\/prometheus\.yml)?:\/etc\/prometheus(\/prometheus\.yml)?(:ro)?$/.test(mount)),
      'prometheus must mount deploy/prometheus at /etc/prometheus',
    );
    assert.ok(
      mounts('grafana').some((mount) => /^\.\/deploy\/grafana\/provisioning:\/etc\/grafana\/provisioning(:ro)?$/.test(mount)),
      'grafana must mount deploy/grafana/provisioning at /etc/grafana/provisioning',
    );
  });

  it('loads the alert rules into Prometheus from the mounted folder', () => {
    const config = parse(read('deploy/prometheus/prometheus.yml')) as { rule_files?: string[] };
    assert.deepEqual(config.rule_files, ['alerts.yml'], 'prometheus.yml must load alerts.yml');
    // Relative to /etc/prometheus/prometheus.yml, i.e. deploy/prometheus/alerts.yml on the host.
    const rules = parse(read('deploy/prometheus/alerts.yml')) as { groups?: Array<{ rules?: Array<{ alert?: string }> }> };
    assert.ok((rules.groups ?? []).flatMap((g) => g.rules ?? []).filter((r) => r.alert).length >= 10, 'alerts.yml holds the alert rules');
  });

  it('provisions the pipeline overview, drift and model dashboards in Grafana', () => {
    const provider = parse(read('deploy/grafana/provisioning/dashboards/sluice.yml')) as { providers?: Array<{ type?: string; options?: { path?: string } }> };
    const file = (provider.providers ?? []).find((p) => p.type === 'file');
    assert.ok(file, 'no file provider for dashboards');
    // Grafana sees deploy/grafana/provisioning at /etc/grafana/provisioning.
    const hostPath = (file.options?.path ?? '').replace(/^\/etc\/grafana\/provisioning\//, 'deploy/grafana/provisioning/');
    assert.equal(hostPath, 'deploy/grafana/provisioning/dashboards');
    for (const name of ['pipeline-overview.json', 'drift.json', 'model.json']) {
      const dashboard = JSON.parse(read(`${hostPath}/${name}`)) as { uid?: string; panels?: Array<{ datasource?: { uid?: string } }> };
      assert.ok(dashboard.uid && (dashboard.panels ?? []).length > 0, `${name}: a dashboard with panels`);
      for (const panel of dashboard.panels ?? []) assert.equal(panel.datasource?.uid, 'prometheus', `${name}: panels use the provisioned Prometheus datasource`);
    }
  });

  it('runs one monitor per pipeline, scraped by Prometheus', () => {
    for (const { pipeline, prefix } of PIPELINES) {
      assert.deepEqual(argv(`${prefix}monitor`).slice(2), ['monitor', '--pipeline', pipeline]);
      assert.ok(scrapedTargets().includes(`${prefix}monitor:9464`), `${prefix}monitor is scraped`);
    }
  });

  it('provisions Grafana with the Prometheus service as its default datasource', () => {
    const provisioning = parse(read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources?: { type?: string; url?: string; isDefault?: boolean }[];
    };
    const datasource = (provisioning.datasources ?? []).find((candidate) => candidate.type === 'prometheus');
    assert.ok(datasource, 'no prometheus datasource is provisioned');
    assert.equal(datasource.url, 'http://prometheus:9090');
    assert.equal(datasource.isDefault, true);
  });
});
