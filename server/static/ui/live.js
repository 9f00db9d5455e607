// A small graphql-transport-ws client: one WebSocket for every subscription of the page, the
// token in connection_init, and a reconnect with backoff that subscribes everything again.
// onStatus(up, detail) tells the page when the connection is lost and when it is back.

const PROTOCOL = "graphql-transport-ws";

export class LiveClient {
  constructor(url, connectionPayload, onStatus) {
    this.url = url;
    this.connectionPayload = connectionPayload;
    this.onStatus = onStatus;
    this.subscriptions = new Map();
    this.nextId = 1;
    this.socket = null;
    this.acked = false;
    this.attempt = 0;
    this.timer = null;
    this.wasUp = false;
  }

  // Subscribe; returns the function that ends the subscription.
  subscribe(query, variables, onNext, onError = () => {}) {
    const id = String(this.nextId++);
    this.subscriptions.set(id, { query, variables, onNext, onError });
    if (this.acked) this.start(id);
    else this.connect();
    return () => {
      if (!this.subscriptions.delete(id)) return;
      if (this.acked) this.send({ id, type: "complete" });
    };
  }

  // Drop the connection and open a new one (a new token, say); subscriptions carry over.
  restart() {
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      this.acked = false;
      socket.onclose = null;
      socket.close(1000);
    }
    this.connect();
  }

  connect() {
    if (this.socket || this.timer) return;
    let socket;
    try {
      socket = new WebSocket(this.url, PROTOCOL);
    } catch {
      this.lost("cannot open the WebSocket");
      return;
    }
    this.socket = socket;
    this.acked = false;
    socket.onopen = () => {
      this.send({ type: "connection_init", payload: this.connectionPayload() });
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.acked = false;
      this.lost(`connection closed (${event.code}${event.reason ? ": " + event.reason : ""})`);
    };
  }

  lost(detail) {
    this.wasUp = false;
    this.onStatus(false, detail);
    const delay = Math.min(10000, 250 * 2 ** this.attempt++);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.subscriptions.size) this.connect();
    }, delay);
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const subscription = this.subscriptions.get(message.id);
    switch (message.type) {
      case "connection_ack":
        this.acked = true;
        this.attempt = 0;
        this.onStatus(true, "");
        for (const id of this.subscriptions.keys()) this.start(id);
        break;
      case "ping":
        this.send({ type: "pong" });
        break;
      case "next":
        if (subscription) subscription.onNext(message.payload);
        break;
      case "error":
        if (subscription) {
          this.subscriptions.delete(message.id);
          subscription.onError(message.payload);
        }
        break;
      case "complete":
        this.subscriptions.delete(message.id);
        break;
      default:
        break;
    }
  }

  start(id) {
    const { query, variables } = this.subscriptions.get(id);
    this.send({ id, type: "subscribe", payload: { query, variables } });
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }
}
