// One connection that LISTENs on the store's channel and wakes the feed when any process commits an event.
// A wake is only a hint to read the tail now: a notification lost while the connection was down costs one
// poll interval, never an event, so on every (re)connect the listeners are woken once to catch up.
import { quoteIdent } from './migrations.js';

/** The LISTEN connection: a pg.Client of its own, or one checked out of the user's pool. */
export interface ListenConnection {
  query(text: string): Promise<unknown>;
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error' | 'end', listener: (error?: Error) => void): unknown;
  removeAllListeners(event?: string): unknown;
  /** Closes the connection or hands it back broken, so the pool does not reuse a LISTENing session. */
  close(): Promise<void>;
}

const RECONNECT_MS = 1_000;

export class NotifyListener {
  readonly #wakes = new Set<() => void>();
  #connection: ListenConnection | undefined;
  #connecting = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly channel: string,
    /** Notifications whose payload starts with this (`<origin> <seq>`) are the listener's own writes. */
    private readonly origin: string,
    private readonly open: () => Promise<ListenConnection>,
    private readonly onError: (error: unknown) => void,
  ) {}

  add(wake: () => void): () => void {
    const entry = () => wake();
    this.#wakes.add(entry);
    if (this.#wakes.size === 1) this.#connect();
    return () => {
      this.#wakes.delete(entry);
      if (this.#wakes.size === 0) void this.stop();
    };
  }

  async stop(): Promise<void> {
    this.#wakes.clear();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const connection = this.#connection;
    this.#connection = undefined;
    if (connection) {
      connection.removeAllListeners();
      // An error after we stopped listening is nobody's business.
      connection.on('error', () => {});
      await connection.close().catch(() => {});
    }
  }

  #wakeAll(): void {
    for (const wake of [...this.#wakes]) {
      try {
        wake();
      } catch (error) {
        this.onError(error);
      }
    }
  }

  #connect(): void {
    if (this.#connecting || this.#connection || this.#wakes.size === 0) return;
    this.#connecting = true;
    void this.#listen().finally(() => {
      this.#connecting = false;
    });
  }

  async #listen(): Promise<void> {
    let connection: ListenConnection | undefined;
    try {
      connection = await this.open();
      const lost = (error?: Error) => this.#lost(connection!, error);
      connection.on('error', lost);
      connection.on('end', lost);
      connection.on('notification', (message) => {
        if (message.channel !== this.channel) return;
        if (message.payload?.startsWith(`${this.origin} `)) return;
        this.#wakeAll();
      });
      await connection.query(`LISTEN ${quoteIdent(this.channel)}`);
      if (this.#wakes.size === 0) {
        await connection.close();
        return;
      }
      this.#connection = connection;
      // Whatever was committed while we were not listening.
      this.#wakeAll();
    } catch (error) {
      if (connection) await connection.close().catch(() => {});
      this.onError(error);
      this.#retry();
    }
  }

  #lost(connection: ListenConnection, error?: Error): void {
    if (this.#connection !== connection) return;
    this.#connection = undefined;
    connection.removeAllListeners();
    connection.on('error', () => {});
    void connection.close().catch(() => {});
    if (error) this.onError(error);
    this.#retry();
  }

  #retry(): void {
    if (this.#wakes.size === 0 || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, RECONNECT_MS);
    this.#timer.unref();
  }
}
