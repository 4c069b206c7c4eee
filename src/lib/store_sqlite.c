/* PLACEHOLDER (store helper replaces this file) */
typedef int placeholder_unused;
