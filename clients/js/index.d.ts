// Types of @streamgate/client. The events are those of docs/events.md.

export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";
export type WorkflowStatus = "pending" | "running" | "waiting" | "succeeded" | "failed" | "cancelled";
export type StepStatus = "pending" | "running" | "succeeded" | "failed" | "skipped";

export interface Job {
  job_id: string;
  status: JobStatus | null;
  progress: number | null;
  message: string | null;
  output: unknown;
  error: string | null;
  updated_at: string;
}

export interface WorkflowStep {
  name: string;
  status: StepStatus | null;
  error: string | null;
}

export interface Workflow {
  workflow_id: string;
  status: WorkflowStatus | null;
  step: string | null;
  waiting_for: string | null;
  steps: WorkflowStep[];
  output: unknown;
  error: string | null;
  updated_at: string;
}

export interface ConnectedEvent {
  session_id: string;
  node_id: string;
  channels: string[];
}
export interface MessageEvent<T = unknown> {
  channel: string;
  event: string;
  data: T;
  published_at: string;
}
export interface JobEvent {
  channel: string;
  job: Job;
}
export interface WorkflowEvent {
  channel: string;
  workflow: Workflow;
}
export interface PresenceEvent {
  channel: string;
  action: "join" | "leave";
  sub: string;
  info: Record<string, unknown> | null;
}
export interface ChannelEvent {
  channel: string;
}
export interface ResetEvent {
  reason: string;
  channels: string[];
}
export interface ReasonEvent {
  reason: string;
}
export interface DisconnectEvent {
  reason: string;
  reconnect: boolean;
}
export interface TokenExpiringEvent {
  expires_at: string;
}

/** Every event a client emits, with its data. */
export interface StreamgateEvents {
  connected: ConnectedEvent;
  message: MessageEvent;
  job: JobEvent;
  workflow: WorkflowEvent;
  presence: PresenceEvent;
  subscribed: ChannelEvent;
  unsubscribed: ChannelEvent;
  reset: ResetEvent;
  lagging: ReasonEvent;
  auth_failed: ReasonEvent;
  disconnect: DisconnectEvent;
  token_expiring: TokenExpiringEvent;
  /** Not a stream event: a refusal, a network failure, a getToken failure, a listener that threw. */
  error: StreamgateError;
}

export type StreamgateEventName = keyof StreamgateEvents;

/** The stream's event names, in the order of docs/events.md (without "error"). */
export const EVENTS: readonly Exclude<StreamgateEventName, "error">[];

export class StreamgateError extends Error {
  name: "StreamgateError";
  /** The HTTP status of a refusal; 0 otherwise. */
  status: number;
  /**
   * The error code of a refusal (docs/errors.md), or one of the client's own: "network",
   * "closed" (close() was called), "disconnect" (the server ended the session for good),
   * "aborted"; "" otherwise.
   */
  code: string;
}

export interface BackoffOptions {
  /** The first retry's ceiling, in ms (default 1000). */
  base?: number;
  /** The largest ceiling, in ms (default 30000). */
  cap?: number;
}

export type EventCallbacks = {
  onConnected?: (data: ConnectedEvent) => void;
  onMessage?: (data: MessageEvent) => void;
  onJob?: (data: JobEvent) => void;
  onWorkflow?: (data: WorkflowEvent) => void;
  onPresence?: (data: PresenceEvent) => void;
  onSubscribed?: (data: ChannelEvent) => void;
  onUnsubscribed?: (data: ChannelEvent) => void;
  onReset?: (data: ResetEvent) => void;
  onLagging?: (data: ReasonEvent) => void;
  onAuthFailed?: (data: ReasonEvent) => void;
  onDisconnect?: (data: DisconnectEvent) => void;
  onTokenExpiring?: (data: TokenExpiringEvent) => void;
  onError?: (error: StreamgateError) => void;
  /** Every event, by name. */
  onEvent?: <K extends StreamgateEventName>(name: K, data: StreamgateEvents[K]) => void;
};

export interface ConnectOptions extends EventCallbacks {
  /** The node's base URL, e.g. "https://rt.example.com". */
  url: string;
  /** The channels to open the stream with. */
  channels?: string[];
  /**
   * Returns a fresh end-user token (in a page: a call to the page's own backend). Called to
   * connect, on token_expiring, after auth_failed, and after a refusal.
   */
  getToken: () => string | Promise<string>;
  /**
   * "eventsource" (the default where EventSource exists: the token goes as ?token=) or "fetch"
   * (sends Authorization and Last-Event-ID headers, reads the stream itself).
   */
  transport?: "eventsource" | "fetch";
  /** The fetch to use (default globalThis.fetch). */
  fetch?: typeof globalThis.fetch;
  /** The EventSource constructor to use (default globalThis.EventSource). */
  EventSource?: { new (url: string): EventSourceLike };
  /** A cursor to resume from on the first connection. */
  lastEventId?: string;
  /** Reconnection delays: full jitter below min(cap, base * 2^attempt). */
  backoff?: BackoffOptions;
}

/** What the client needs of an EventSource. */
export interface EventSourceLike {
  readonly readyState: number;
  onerror: ((ev: any) => any) | null;
  addEventListener(type: string, listener: (ev: { data: string; lastEventId: string }) => void): void;
  close(): void;
}

export interface WatchOptions<T> {
  /** Called with every state received, the terminal one included. */
  onProgress?: (state: T) => void;
  /** Stops watching; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface StreamgateClient {
  /** Listens to an event; answers a function that stops listening. */
  on<K extends StreamgateEventName>(name: K, fn: (data: StreamgateEvents[K]) => void): () => void;
  off<K extends StreamgateEventName>(name: K, fn: (data: StreamgateEvents[K]) => void): void;
  /** Adds a channel to the live session (POST /v1/sessions/{id}/subscriptions); kept across reconnects. */
  subscribe(channel: string): Promise<void>;
  /** Removes a channel from the live session (DELETE /v1/sessions/{id}/subscriptions/{channel}). */
  unsubscribe(channel: string): Promise<void>;
  /** Gets a new token and hands it to the session now (done by itself on token_expiring). */
  refreshToken(): Promise<void>;
  /** Resolves with the session id once the stream is open. */
  ready(): Promise<string>;
  /**
   * Resolves with the job's terminal state (succeeded, failed or cancelled), subscribing to
   * job:<id> if the session does not have it (and unsubscribing at the end).
   */
  watchJob(id: string, options?: WatchOptions<Job>): Promise<Job>;
  /** As watchJob, for workflow:<id>. */
  watchWorkflow(id: string, options?: WatchOptions<Workflow>): Promise<Workflow>;
  /** Closes the stream for good. */
  close(): void;
  readonly state: "connecting" | "open" | "closed";
  readonly sessionId: string;
  /** The last cursor received: what a resume starts from. */
  readonly lastEventId: string;
  readonly channels: string[];
}

export function connect(options: ConnectOptions): StreamgateClient;

export interface ParsedEvent {
  event: string;
  data: string;
  /** The event's own id: field, if it had one. */
  id: string | undefined;
  /** The stream's last event id so far. */
  lastEventId: string;
}

export interface SSEParser {
  push(chunk: string): void;
  end(): void;
  readonly lastEventId: string;
}

export function createParser(handlers: {
  onEvent: (event: ParsedEvent) => void;
  onRetry?: (ms: number) => void;
  onComment?: (text: string) => void;
}): SSEParser;

export const DEFAULT_BACKOFF: Readonly<{ base: number; cap: number }>;

export function backoffDelay(attempt: number, options?: BackoffOptions & { random?: () => number }): number;
