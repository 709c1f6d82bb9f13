// A Server-Sent Events parser, as the HTML standard describes it: fed text in chunks of any size,
// it calls onEvent for every dispatched event and onRetry for every valid retry field.

/**
 * @param {{onEvent: (e: {event: string, data: string, id: string | undefined, lastEventId: string}) => void,
 *          onRetry?: (ms: number) => void, onComment?: (text: string) => void}} handlers
 */
export function createParser({ onEvent, onRetry, onComment }) {
  let buffer = "";
  let first = true;
  let pendingCR = false; // the previous chunk ended with CR: a following LF belongs to it
  let data = "";
  let hasData = false;
  let event = "";
  let id; // the id field of the event being read, if any
  let lastEventId = "";

  function line(text) {
    if (text === "") {
      if (hasData) {
        onEvent({ event: event || "message", data, id, lastEventId });
      }
      data = "";
      hasData = false;
      event = "";
      id = undefined;
      return;
    }
    if (text[0] === ":") {
      if (onComment) onComment(text.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = text.indexOf(":");
    let field = text;
    let value = "";
    if (colon >= 0) {
      field = text.slice(0, colon);
      value = text.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
    }
    switch (field) {
      case "data":
        data = hasData ? data + "\n" + value : value;
        hasData = true;
        break;
      case "event":
        event = value;
        break;
      case "id":
        if (!value.includes("\0")) {
          id = value;
          lastEventId = value;
        }
        break;
      case "retry":
        if (/^[0-9]+$/.test(value) && onRetry) onRetry(Number(value));
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  return {
    /** Feeds decoded text. */
    push(chunk) {
      if (first && chunk.length > 0) {
        first = false;
        if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      }
      if (pendingCR && chunk[0] === "\n") chunk = chunk.slice(1);
      pendingCR = false;
      buffer += chunk;
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer[i];
        if (c !== "\n" && c !== "\r") continue;
        line(buffer.slice(start, i));
        if (c === "\r") {
          if (i + 1 === buffer.length) pendingCR = true;
          else if (buffer[i + 1] === "\n") i++;
        }
        start = i + 1;
      }
      buffer = buffer.slice(start);
    },
    /** The end of the stream: an event not ended by a blank line is discarded, as the standard says. */
    end() {
      buffer = "";
      data = "";
      hasData = false;
      event = "";
      id = undefined;
    },
    get lastEventId() {
      return lastEventId;
    },
  };
}
