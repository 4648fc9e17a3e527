// Store locations may carry passwords; anything that names a store in a log line, a metric or an error
// message goes through redactCredentials first.

/**
 * `text` with the password of every URL in it (`scheme://user:password@host`) and of every `password=…`
 * setting masked as `***`: for anything that names a store in a log line, a metric or an error message.
 */
export function redactCredentials(text: string): string {
  // Greedy up to the authority's last '@': a password with an unencoded '@' is masked whole.
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*):[^\s/?#]*@/gi, '$1:***@')
    .replace(/\b(password|passwd|pwd)=('[^']*'|[^\s&;]*)/gi, '$1=***');
}
