/* PLACEHOLDER (server runtime helper replaces this file) */
typedef int placeholder_unused;
